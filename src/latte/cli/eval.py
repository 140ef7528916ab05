"""``latte eval``: FVD / FID / IS and the synthetic-data metrics of sample folders, as a table, JSON and PNG."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("eval", help="compute FVD/FID/IS (or the synthetic-data metrics) of generated videos",
                       description="Evaluate one or several folders of generated videos (e.g. `latte sample` "
                                   "outputs of several checkpoints) against real videos. Every protocol knob is "
                                   "written to OUT/eval.json; see docs/eval.md.")
    p.add_argument("--real", help="real videos: a folder of video files or frame folders, or 'synthetic' "
                                  "(render clips from the classifier's synthetic-data spec)")
    p.add_argument("--fake", nargs="+", required=True, help="one or more folders of generated videos")
    p.add_argument("--metrics", default="fvd",
                   help="comma list of fvd, fid, is, synthetic-fvd, attribute-accuracy, temporal")
    p.add_argument("--preset", default="fvd2048_16f",
                   help="protocol defaults: fvd2048_16f, fvd2048_16f_taichi (real stride 6), isv2048_ucf")
    p.add_argument("--detector-path", "--i3d-path", dest="i3d_path",
                   help="FVD I3D weights: i3d_pretrained_400.pt or i3d_torchscript.pt")
    p.add_argument("--inception-path", help="FID InceptionV3 weights (pytorch-fid .pth or TorchScript .pt)")
    p.add_argument("--c3d-path", help="IS C3D weights (c3d_ucf101.pt or conv3d_deepnetA_ucf.npz)")
    p.add_argument("--c3d-mean-path", help="mean2.npz for the npz C3D (default: beside the weights)")
    p.add_argument("--classifier", dest="classifier_path", help="synthetic-data classifier folder "
                                                               "(from `latte train-classifier`)")
    p.add_argument("--num-clips", type=int, help="real and generated clips (sets both)")
    p.add_argument("--num-real", type=int, help="real clips (overrides --num-clips)")
    p.add_argument("--num-fake", type=int, help="generated clips (overrides --num-clips)")
    p.add_argument("--frames", dest="num_frames", type=int, help="frames per clip (default 16)")
    p.add_argument("--real-stride", type=int, help="temporal stride of real clips (default 3)")
    p.add_argument("--fake-stride", type=int, help="temporal stride of generated clips (default 1)")
    p.add_argument("--seed", type=int, help="seed of clip selection and offsets (default 0)")
    p.add_argument("--resolution", type=int, help="centre-crop + resize frames to this side first (presets: 256; "
                                                  "0 keeps the frames as decoded)")
    p.add_argument("--resize-kernel", choices=["lanczos", "bilinear-antialias"],
                   help="kernel of that resize (default lanczos, as the reference frame converter)")
    p.add_argument("--batch-size", type=int, help="clips per detector batch (default 8)")
    p.add_argument("--workers", dest="num_workers", type=int, help="decoding worker processes")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--real-stats", help="folder caching real statistics (reused if the protocol matches)")
    p.add_argument("--covariance", choices=["biased", "unbiased"], help="covariance normalisation")
    p.add_argument("--sqrt-method", choices=["sqrtm", "eigh"], help="matrix square root method")
    p.add_argument("--out", required=True, help="output folder: eval.json and eval.png")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run, user_value_errors=True)


def _init_distributed(device: str | None) -> tuple[int, str]:
    """Under torchrun (WORLD_SIZE > 1) join the process group; returns (rank, device)."""
    import torch

    from latte.dist import torchrun_env

    env = torchrun_env()
    if not env.distributed:
        return 0, device or ("cuda" if torch.cuda.is_available() else "cpu")
    local = env.local_rank
    use_cuda = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
    torch.distributed.init_process_group("nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local)
        return torch.distributed.get_rank(), f"cuda:{local}"
    return torch.distributed.get_rank(), "cpu"


def run(args) -> int:
    import json
    from pathlib import Path

    from latte.metrics.evaluate import evaluate, format_table, make_settings, plot_results

    from latte.io import atomic_write_text, ensure_writable_dir

    rank, device = _init_distributed(args.device)
    if rank == 0:
        ensure_writable_dir(args.out)  # "cannot write to <dir>" now, not after the features
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    settings = make_settings(
        args.preset, metrics=metrics, num_real=args.num_real or args.num_clips,
        num_fake=args.num_fake or args.num_clips, num_frames=args.num_frames, real_stride=args.real_stride,
        fake_stride=args.fake_stride, seed=args.seed, resolution=args.resolution or None,
        resize_kernel=args.resize_kernel, batch_size=args.batch_size,
        num_workers=args.num_workers, device=device, covariance=args.covariance, sqrt_method=args.sqrt_method,
        i3d_path=args.i3d_path, inception_path=args.inception_path, c3d_path=args.c3d_path,
        c3d_mean_path=args.c3d_mean_path, classifier_path=args.classifier_path, real_stats=args.real_stats,
        progress=not args.no_progress and rank == 0)
    if args.resolution == 0:
        settings.resolution = None
    real = args.real
    if real is None and {"synthetic-fvd"} & set(metrics):
        real = "synthetic"
    result = evaluate(settings, real, args.fake)
    result["preset"] = args.preset
    if rank != 0:
        return 0
    out = Path(args.out)
    atomic_write_text(out / "eval.json", json.dumps(result, indent=2) + "\n")
    print(format_table(result))
    plot = plot_results(result, out / "eval.png")
    print(f"wrote {out / 'eval.json'} and {plot}")
    return 0
