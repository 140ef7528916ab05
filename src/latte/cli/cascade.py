"""``latte cascade``: the LaVie cascade (base → 16→61 interpolation → ×4 super-resolution) from a prompt or a
video. Each stage comes from the released weights (``--lavie-dir``, ``--{stage}-unet``), from a stage trained with
``latte train`` on a LaVie config (``--{stage}-run``), or for the base from a Latte model (``--base-latte``).
See docs/cascade.md."""
from __future__ import annotations

from pathlib import Path

from latte.cli.sample import add_given_frame_arguments, check_given_frame_arguments

STAGE_FLAGS = (("prompt", str, "TEXT", "prompt of this stage (default: the --prompt of the video)"),
               ("negative-prompt", str, "TEXT", "negative prompt (defaults: base '', interp 'None', vsr "
                                                "'blur, worst quality')"),
               ("cfg-scale", float, "W", "guidance scale (defaults: base 7.5, interp 4, vsr 5)"),
               ("steps", int, "N", "sampling steps (default 50)"),
               ("sampler", str, "NAME", "sampler (defaults: base ddpm-diffusers, interp ddim (official respaced), "
                                        "vsr ddim-diffusers); any `latte sample` sampler"),
               ("timestep-offset", int, "K", "diffusers samplers: 'leading' spacing offset (0: 980..0, 1: 981..1; "
                                             "default: official, DDPM 0, DDIM 1)"),
               ("seed", int, "S", "seed of this stage's generator (default: the video's seed)"))


def register(sub) -> None:
    p = sub.add_parser(
        "cascade", help="LaVie cascade: text → video → 16→61 interpolation → ×4 super-resolution",
        description="Run the LaVie cascade. --stages picks any of base,interp,vsr in that order (official options: "
                    "base; base,interp; base,vsr; base,interp,vsr); without base, --input gives the video to "
                    "interpolate / upscale. Weights: --lavie-dir laid out like the official pretrained_models/ "
                    "(lavie_base.pt, lavie_interpolation.pt, lavie_vsr.pt, stable-diffusion-v1-4/, "
                    "stable-diffusion-x4-upscaler/); --base-latte uses a Latte text-to-video model as the base; "
                    "--base-run / --interp-run / --vsr-run use a stage trained with `latte train` on a LaVie config "
                    "(its own autoencoder, text encoder and noise schedule; no --lavie-dir needed). A "
                    "--base-latte model trained with frame conditioning takes --image (image-to-video) or --extend "
                    "(continue a video) before interpolation and super-resolution. "
                    "Video i (seed SEED+i) is written as {i:05d}.mp4 + {i:05d}.json; rerunning resumes.")
    p.add_argument("--lavie-dir", metavar="DIR", help="folder with the released LaVie weights (official layout)")
    p.add_argument("--stages", default="base,interp,vsr", help="comma-separated, in order (default all three)")
    text = p.add_mutually_exclusive_group()
    text.add_argument("--prompt", action="append", metavar="TEXT", help="a prompt (repeatable; one video each)")
    text.add_argument("--prompts", "--prompt-file", dest="prompts", metavar="FILE",
                      help="text file with one prompt per line")
    p.add_argument("--input", metavar="VIDEO", help="start from this video (stages without base)")
    p.add_argument("--num-videos", type=int, default=None, help="videos to make (default: one per prompt)")
    p.add_argument("--seed", type=int, default=0, help="video i uses seed SEED + i in every stage")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--format", default="mp4", help="comma-separated: mp4, gif, png-grid (default mp4)")
    p.add_argument("--save-intermediate", action="store_true",
                   help="also write each earlier stage's video as {i:05d}.{stage}.mp4")
    p.add_argument("--official", action="store_true",
                   help="the official script route: mp4 re-read between stages, file name as prompt of stages 2-3, "
                        "', 4k.' appended for interpolation, official uint8 rounding")
    p.add_argument("--offload", action="store_true", help="keep stages on the CPU except the one running")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"],
                   help="U-Net and VAE precision on CUDA (CPU always float32)")
    p.add_argument("--frames", type=int, default=None, help="base frames (default 16, or the Latte model's)")
    p.add_argument("--height", type=int, default=None, help="base height in pixels (default 320)")
    p.add_argument("--width", type=int, default=None, help="base width in pixels (default 512)")
    p.add_argument("--interp-factor", type=int, default=4, help="n frames -> k(n-1)+1 (default 4: 16 -> 61)")
    p.add_argument("--vsr-chunk", type=int, default=8, help="frames per super-resolution call (official 8)")
    p.add_argument("--vsr-overlap", type=int, default=0,
                   help="frames shared by consecutive VSR chunks, cross-faded (0 = official; <= chunk/2)")
    p.add_argument("--vsr-noise-level", type=int, default=None,
                   help="low-res augmentation level (default: official 50; a --vsr-run: min(50, its "
                        "lavie.max_noise_level))")
    p.add_argument("--vae-chunk", type=int, default=None,
                   help="frames per VAE encode/decode call of --lavie-dir stages (default 8 base/interp, 4 vsr; a "
                        "--{stage}-run keeps its run's autoencoder.chunk_size)")
    for stage in ("base", "interp", "vsr"):
        p.add_argument(f"--{stage}-unet", metavar="PATH",
                       help=f"{stage} U-Net weights instead of --lavie-dir's (a .pt, or a folder with config.json)")
        p.add_argument(f"--{stage}-run", metavar="RUN",
                       help=f"a {stage} stage trained with `latte train` on a LaVie config: its run directory "
                            "(latest checkpoint) or a checkpoints/step_N directory; needs no --lavie-dir")
        for flag, typ, meta, help_ in STAGE_FLAGS:
            p.add_argument(f"--{stage}-{flag}", type=typ, default=None, metavar=meta, help=f"{stage}: {help_}")
    p.add_argument("--base-latte", metavar="RUN_OR_FILE",
                   help="a Latte text-to-video model (run dir, model folder, diffusers folder, .pt) as the base")
    p.add_argument("--latte-vae", metavar="PATH", help="VAE for --base-latte (overrides its own)")
    p.add_argument("--latte-text-encoder", metavar="PATH", help="text encoder for --base-latte (overrides its own)")
    add_given_frame_arguments(p, "a --base-latte model trained with model.frame_conditioning; before interpolation "
                                 "and super-resolution")
    p.add_argument("--run-weights", default="ema", choices=["ema", "model"],
                   help="weights of the --{base,interp,vsr}-run checkpoints: ema (default; what the run's validation "
                        "samples use) or model (the raw, non-averaged training weights)")
    p.add_argument("--no-progress", "--quiet", dest="no_progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _stage_settings(args, stage: str):
    from latte.sampling.cascade import StageSettings

    values = {flag.replace("-", "_"): getattr(args, f"{stage}_{flag.replace('-', '_')}") for flag, *_ in STAGE_FLAGS}
    return StageSettings(**values)


def trained_checkpoint(path, stage: str, weights: str = "ema") -> Path:
    """The checkpoint directory of ``--{stage}-run PATH`` (a run directory: its latest checkpoint, or a
    ``checkpoints/step_N`` directory), checked to hold a LaVie ``stage`` run with ``weights`` (ema | model)
    before any weights are read."""
    from latte.io import load_yaml_mapping
    from latte.training.checkpoint import resolve_checkpoint

    flag, path = f"--{stage}-run", Path(path).expanduser()
    is_checkpoint = (path / "run_config.yaml").is_file() and any((path / w / "config.json").is_file()
                                                                 for w in ("ema", "model"))
    try:
        ckpt = path if is_checkpoint else resolve_checkpoint(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{flag} {path}: not a LaVie training run (expected a run directory of `latte train` "
                                "with checkpoints/latest, or one of its checkpoints/step_N directories holding "
                                "ema/, model/ and run_config.yaml)") from None
    config_file = ckpt / "run_config.yaml"
    lavie = load_yaml_mapping(config_file, "run config").get("lavie")
    if not isinstance(lavie, dict):
        raise ValueError(f"{flag} {path}: not a LaVie stage run ({config_file} has no lavie: section; a Latte "
                         "text-to-video run is --base-latte)")
    kind = lavie.get("stage", "base")
    if kind != stage:
        raise ValueError(f"{flag} {path}: this run trained the {kind} stage (lavie.stage: {kind} in {config_file}), "
                         f"not {stage}; pass it as --{kind}-run")
    if not (ckpt / weights).is_dir():
        other = "model" if weights == "ema" else "ema"
        raise FileNotFoundError(f"{flag} {path}: {ckpt} has no {weights}/ weights (pass --run-weights {other})")
    return ckpt


def _check_stage_sources(args, stages: tuple[str, ...]) -> None:
    """At most one source per stage, and no --{stage}-run for a stage that does not run."""
    for stage in ("base", "interp", "vsr"):
        run_dir = getattr(args, f"{stage}_run")
        if run_dir is None:
            continue
        others = [f"--{stage}-unet"] if getattr(args, f"{stage}_unet") else []
        if stage == "base" and args.base_latte:
            others.append("--base-latte")
        if others:
            raise ValueError(f"--{stage}-run {run_dir} and {' and '.join(others)} both give the {stage} stage; "
                             "pass one")
        if stage not in stages:
            raise ValueError(f"--{stage}-run {run_dir}: the {stage} stage is not in --stages {','.join(stages)}")


def _check_given_frames(args, stages: tuple[str, ...]) -> None:
    """--image / --extend / --context-frames: for a --base-latte base stage that runs, files readable; checked
    before any model loads. (A --base-latte model without frame conditioning is refused by the pipeline.)"""
    flags = [f"--{name.replace('_', '-')}" for name in ("image", "extend", "context_frames")
             if getattr(args, name) is not None]
    if not flags:
        return
    from latte.sampling.cascade import check_given_frames

    source = "--base-run" if args.base_run else "--lavie-dir / --base-unet"
    check_given_frames(flags, stages, bool(args.base_latte), f"a LaVie U-Net ({source})", "--base-latte RUN")
    check_given_frame_arguments(args)


def build_pipeline(args, stages: tuple[str, ...], device: str):
    from latte.sampling.cascade import CascadePipeline, LatteBaseStage, load_lavie_stage, load_trained_stage

    _check_stage_sources(args, stages)
    runs = {s: trained_checkpoint(getattr(args, f"{s}_run"), s, args.run_weights) for s in stages
            if getattr(args, f"{s}_run")}
    built = {}
    if "base" in stages and args.base_latte:
        from latte.sampling import LattePipeline

        built["base"] = LatteBaseStage(LattePipeline.load(args.base_latte, device="cpu", vae=args.latte_vae,
                                                          text_encoder=args.latte_text_encoder))
    for stage in stages:
        if stage in built:
            continue
        if stage in runs:
            built[stage] = load_trained_stage(runs[stage], ema=args.run_weights == "ema", device="cpu")
            continue
        if not args.lavie_dir:
            raise ValueError(f"the {stage} stage needs --lavie-dir (the folder with the LaVie weights), or "
                             f"--{stage}-run{' or --base-latte' if stage == 'base' else ''}")
        built[stage] = load_lavie_stage(args.lavie_dir, stage, unet=getattr(args, f"{stage}_unet"),
                                        vae_chunk=args.vae_chunk, device="cpu")
    return CascadePipeline(**built, device=device, dtype=args.dtype, offload=args.offload)


def run(args) -> int:
    import sys
    import time

    import torch
    from tqdm.auto import tqdm

    from latte.data.video_io import write_mp4
    from latte.sampling.cascade import resolve_stages
    from latte.sampling.outputs import is_done, parse_formats, save_videos, video_stem
    from latte.sampling.pipeline import SampleOutput
    from latte.sampling.runner import read_prompts

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    progress = not args.no_progress
    try:
        formats = parse_formats(args.format)
        stages = resolve_stages(args.stages.split(","), args.input is not None)
        prompts = read_prompts(args.prompts) if args.prompts else (args.prompt or [None])
        if prompts == [None] and args.input is None:
            raise ValueError("pass --prompt TEXT or --prompts FILE")
        _check_given_frames(args, stages)
        num = args.num_videos or len(prompts)
        pending = [i for i in range(num) if not is_done(args.out, i, formats)]
        start = time.perf_counter()
        if pending:
            pipe = build_pipeline(args, stages, device)
            settings = {s: _stage_settings(args, s) for s in stages}
            noise_level = args.vsr_noise_level
            if noise_level is None:  # the vsr stage's own: 50 released, min(50, lavie.max_noise_level) trained
                noise_level = pipe.stages["vsr"].noise_level if "vsr" in stages else 50
            bar = tqdm(total=len(pending), desc="videos", unit="video", disable=not progress)
            for i in pending:
                out = pipe.run(prompts[i % len(prompts)], stages=stages, input=args.input, seed=args.seed + i,
                           settings=settings, official=args.official, frames=args.frames, height=args.height,
                           width=args.width, interp_factor=args.interp_factor, vsr_chunk=args.vsr_chunk,
                           vsr_overlap=args.vsr_overlap, noise_level=noise_level, progress=progress,
                           image=args.image, extend=args.extend, context_frames=args.context_frames,
                           callback=lambda stage, done, total: bar.set_postfix_str(f"{stage} {done}/{total}"))
                record = {"index": i, **out.record}
                if args.save_intermediate:
                    record["intermediate"] = {}
                    for r in out.stages[:-1]:
                        path = Path(args.out) / f"{video_stem(i)}.{r['stage']}.mp4"
                        write_mp4(path, r["video"], fps=r["fps"])
                        record["intermediate"][r["stage"]] = path.name
                save_videos(SampleOutput(out.video[None], [record]), args.out, formats, fps=out.fps)
                bar.update(1)
            bar.close()
    except (FileNotFoundError, ValueError) as e:
        print(f"latte cascade: {e}", file=sys.stderr)
        return 2
    made = len(pending)
    present = sum(is_done(args.out, i, formats) for i in range(num))
    print(f"latte cascade: {present}/{num} videos in {args.out} ({made} made now in "
          f"{time.perf_counter() - start:.0f} s; {num - made} already present; stages {','.join(stages)})")
    return 0
