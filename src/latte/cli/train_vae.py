"""``latte train-vae CONFIG``: train a small diffusers AutoencoderKL; writes RUN/vae (usable as kind 'trained')."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "train-vae", help="train a small AutoencoderKL on video frames (RUN/vae, scaling factor fitted)",
        description="Train a diffusers AutoencoderKL on the frames of a dataset; at the end fit the latent "
                    "scaling factor (1/std), report held-out PSNR and write RUN/vae and RUN/vae_report.json.")
    p.add_argument("config", help="VAETrainConfig YAML file or shipped name (e.g. vae/tiny_shapes)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set max_steps=200 --set data.image_size=64 (repeatable)")
    p.add_argument("--resume", nargs="?", const="", default=None, metavar="PATH",
                   help="continue from the latest checkpoint of the run dir, or from PATH (a run dir or a "
                        "checkpoints/step_XXXXXXX dir)")
    p.add_argument("--no-progress", action="store_true", help="disable the progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    from latte.config import load_yaml
    from latte.encoders.vae_training import VAETrainConfig
    from latte.training.tasks.vae import train_vae

    cfg = load_yaml(args.config, VAETrainConfig, args.overrides)
    resume = None if args.resume is None else (args.resume or cfg.run_dir)
    report = train_vae(cfg, resume=resume, progress=not args.no_progress)
    print(json.dumps(report, indent=2))
    return 0
