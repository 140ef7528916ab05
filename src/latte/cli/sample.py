"""``latte sample --checkpoint RUN_OR_FILE [--prompt ...|--prompts FILE|--class ...] --num-videos N ...``.

Launch with torchrun to split the videos over processes; rerunning the same command resumes.
"""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "sample", help="generate videos from a trained or released Latte model",
        description="Generate videos. --checkpoint accepts a run directory (latest checkpoint, EMA weights), a "
                    "checkpoint directory, a Latte model folder, a diffusers/Latte-1 folder (transformer/, vae/, "
                    "text_encoder/, ...) or a released .pt (ffs, skytimelapse, taichi-hd, ucf101, t2v). Settings "
                    "left out use the model's official defaults (DDPM 250 / CFG 7 class-conditional, DDPM 250 "
                    "unconditional, DDIM 50 / guidance 7.5 text-to-video). Under torchrun, rank r makes videos "
                    "i with i %% world == r; existing videos are skipped, so an interrupted run resumes.")
    p.add_argument("--checkpoint", required=True, metavar="RUN_OR_FILE", help="what to sample from (see above)")
    cond = p.add_mutually_exclusive_group()
    cond.add_argument("--prompt", action="append", metavar="TEXT", help="a prompt (repeatable; cycled over videos)")
    cond.add_argument("--prompts", metavar="FILE", help="text file with one prompt per line")
    cond.add_argument("--class", dest="classes", action="append", metavar="NAME_OR_ID",
                      help="class id or name from the run's class-name mapping (repeatable; cycled)")
    p.add_argument("--num-videos", type=int, default=None,
                   help="videos to make (default: one per prompt/class, or 1)")
    p.add_argument("--sampler", default=None,
                   help="ddpm, ddim, ddim-stride (official loops) or a diffusers scheduler: dpm-solver, "
                        "dpm-solver-single, euler, euler-a, ddim-diffusers, ddpm-diffusers, pndm, heun, deis, unipc, "
                        "kdpm2-a (default: the model's official sampler)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: official, 250 or 50)")
    p.add_argument("--cfg-scale", type=float, default=None,
                   help="classifier-free guidance scale; 1 disables (default: 7 class, 7.5 text, 1 unconditional)")
    p.add_argument("--cache", default="none", metavar="SPEC",
                   help="step cache: 'none' or 'teacache:THRESHOLD' (e.g. teacache:0.1; 0 = uncached exactly, "
                        "larger = faster, less faithful); see docs/sampling.md")
    p.add_argument("--seed", type=int, default=0, help="video i uses seed SEED + i (recorded in its sidecar)")
    p.add_argument("--frames", type=int, default=None,
                   help="frames per video (default: the model's). More than the trained length samples with "
                        "sliding temporal windows (--window)")
    p.add_argument("--window", type=int, default=None, metavar="FRAMES",
                   help="temporal window for long videos: the model sees FRAMES frames at a time, overlapping "
                        "windows are blended and the noise is rescheduled (FreeNoise). Default: the trained length "
                        "when --frames exceeds it; 0 turns windows off (full attention over all frames)")
    p.add_argument("--window-stride", type=int, default=None, metavar="FRAMES",
                   help="frames between window starts (default: half the window)")
    add_given_frame_arguments(p)
    p.add_argument("--height", type=int, default=None, help="height in pixels (default: the training size)")
    p.add_argument("--width", type=int, default=None, help="width in pixels (default: the training size)")
    p.add_argument("--fps", type=float, default=8, help="frame rate of mp4/GIF files")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder ({index:05d}.mp4 + .json per video)")
    p.add_argument("--format", default="mp4", help="comma-separated: mp4, gif, png-grid (default mp4)")
    p.add_argument("--batch-size", type=int, default=1, help="videos denoised together (results do not change)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"],
                   help="transformer and VAE precision on CUDA (CPU always uses float32)")
    p.add_argument("--no-ema", action="store_true", help="use the raw weights of a run instead of the EMA")
    p.add_argument("--vae", metavar="PATH", help="VAE folder (or a folder holding vae/); overrides the run's")
    p.add_argument("--text-encoder", metavar="PATH", help="text encoder folder (e.g. T5); overrides the run's")
    p.add_argument("--kind", choices=["ffs", "sky", "taichi", "ucf101", "t2v"], default=None,
                   help="which released model a .pt is (default: guessed from the file name)")
    p.add_argument("--truncate-text", choices=["auto", "on", "off"], default="auto",
                   help="cut prompt features to their valid tokens and the empty prompt to the same length, as "
                        "the official pipeline does for one prompt (auto: on for released text-to-video models)")
    p.add_argument("--lora", metavar="PATH", help="apply a LoRA adapter (folder with adapter.safetensors, e.g. "
                                                 "CHECKPOINT/ema of a train.trainable: lora run)")
    p.add_argument("--lora-scale", type=float, default=1.0, help="scale of the LoRA update (default 1)")
    p.add_argument("--no-progress", "--quiet", dest="no_progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run, user_value_errors=True)


def add_given_frame_arguments(p, model: str = "a model trained with model.frame_conditioning") -> None:
    """``--image`` / ``--extend`` / ``--context-frames`` (image-to-video and extension; ``latte sample`` and
    ``latte cascade``); ``model`` says which model takes them. Check them with :func:`check_given_frame_arguments`."""
    p.add_argument("--image", metavar="FILE",
                   help=f"image-to-video: this image (png, jpg, ...) is the first frame ({model}; resized if "
                        "square and of another size)")
    p.add_argument("--extend", metavar="VIDEO",
                   help=f"continue this video (mp4, ...) with {model}: the output starts with its frames; "
                        "--frames is the total length (default: one more clip)")
    p.add_argument("--context-frames", type=int, default=None, metavar="K",
                   help="frame-conditioned models: frames of the previous clip given to the next one when extending "
                        "(--extend, or --frames beyond the trained length); default half the trained clip")


def check_given_frame_arguments(args) -> None:
    """--image and --extend exclusive, their files readable: checked before any model loads (errors name the
    option and the file)."""
    from latte.sampling.given_frames import read_given

    if args.image and args.extend:
        raise ValueError("--image and --extend: give one (a first frame, or a video to continue)")
    for kind in ("image", "extend"):
        if getattr(args, kind):
            read_given(getattr(args, kind), kind)


def run(args) -> int:
    import torch

    from latte.io import ensure_writable_dir
    from latte.sampling import LattePipeline
    from latte.sampling.cache import parse_cache
    from latte.sampling.runner import SampleJob, read_prompts, run_job, summarize
    from latte.training.distributed import all_gather_objects, barrier, cleanup_distributed, setup_distributed

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dist = setup_distributed(device)
    try:
        prompts = read_prompts(args.prompts) if args.prompts else args.prompt
        parse_cache(args.cache)  # a bad spec fails before the model loads
        check_given_frame_arguments(args)  # an unreadable file fails before the model loads
        ensure_writable_dir(args.out)  # before minutes of model loading
        pipe = LattePipeline.load(args.checkpoint, ema=not args.no_ema, device=dist.device, dtype=args.dtype,
                                  vae=args.vae, text_encoder=args.text_encoder, kind=args.kind)
        if args.lora:
            pipe.apply_lora(args.lora, args.lora_scale)
        if args.truncate_text != "auto":
            pipe.truncate_text = args.truncate_text == "on"
        count = len(prompts) if prompts else (len(args.classes) if args.classes else 1)
        job = SampleJob(out_dir=args.out, num_videos=args.num_videos or count, prompts=prompts,
                        classes=args.classes, seed=args.seed, sampler=args.sampler, steps=args.steps,
                        cfg_scale=args.cfg_scale, frames=args.frames, height=args.height, width=args.width,
                        fps=args.fps, formats=args.format.split(","), batch_size=args.batch_size,
                        cache=args.cache, window=args.window, window_stride=args.window_stride,
                        image=args.image, extend=args.extend, context_frames=args.context_frames)
        result = run_job(pipe, job, dist.rank, dist.world_size, progress=not args.no_progress)
        results = all_gather_objects(result)
        barrier()
        if dist.is_main:
            print(summarize(results, job))
        return 0
    finally:
        cleanup_distributed()
