"""``latte export --to diffusers RUN DIR``: a text-to-video run as a diffusers ``LattePipeline`` folder."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "export", help="write a text-to-video model as a diffusers LattePipeline folder",
        description="Write transformer/ (LatteTransformer3DModel), scheduler/ (DDIMScheduler on the training "
                    "betas), model_index.json and copies of the run's VAE and text encoder/tokenizer folders. "
                    "Only text-conditional, interleaved, adaLN-single models are expressible in diffusers.")
    p.add_argument("--to", required=True, choices=["diffusers"], help="target format")
    p.add_argument("source", metavar="RUN", help="run directory, checkpoint directory or Latte model folder")
    p.add_argument("out", metavar="DIR", help="output folder")
    p.add_argument("--no-ema", action="store_true", help="export the raw weights instead of the EMA")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys

    from latte.interop.diffusers import export_to_diffusers

    written = export_to_diffusers(args.source, args.out, ema=not args.no_ema)
    for name, path in written.items():
        print(f"  {name:13s} {path if path else '(not available: no local folder in the run config)'}")
    if written.get("vae") is None or written.get("text_encoder") is None:
        print("latte export: diffusers.LattePipeline also needs vae/ and text_encoder/ + tokenizer/; add them to "
              f"{args.out} before loading it as a pipeline", file=sys.stderr)
    print(f"latte export: wrote {args.out}")
    return 0
