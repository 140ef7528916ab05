"""``latte import --from diffusers DIR OUT``: a diffusers Latte transformer as our model folder."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "import", help="convert a diffusers LatteTransformer3DModel (or Latte-1 folder) into a Latte model folder",
        description="Read DIR (a LattePipeline folder with transformer/, or a transformer folder) and write OUT "
                    "(config.json + model.safetensors, loadable by Latte.from_pretrained and `latte sample "
                    "--checkpoint OUT --vae ... --text-encoder ...`).")
    p.add_argument("--from", dest="source_format", required=True, choices=["diffusers"], help="source format")
    p.add_argument("source", metavar="DIR", help="diffusers folder")
    p.add_argument("out", metavar="OUT", help="output model folder")
    p.set_defaults(func=run)


def run(args) -> int:
    from latte.interop.diffusers import import_from_diffusers

    out = import_from_diffusers(args.source, args.out)
    print(f"latte import: wrote {out}")
    return 0
