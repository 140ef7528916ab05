"""``latte train-classifier``: the small video classifier behind the synthetic-data metrics."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("train-classifier", help="train the synthetic-data attribute classifier (a few minutes "
                                                "on CPU) used by `latte eval --metrics synthetic-fvd,...`")
    p.add_argument("--out", required=True, help="output folder (classifier.safetensors + classifier.json)")
    p.add_argument("--config", help="YAML with ClassifierTrainConfig keys (see docs/eval.md)")
    p.add_argument("--run-config", help="a training run_config.yaml: its data.synthetic section is used, so "
                                        "the classifier sees the generator's data (and data.num_frames, "
                                        "data.image_size)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key, e.g. --set max_steps=400 --set synthetic.pattern=digits")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run)


def run(args) -> int:
    from latte.config import ConfigError, apply_overrides, from_dict
    from latte.io import load_yaml_mapping
    from latte.metrics.synthetic import ClassifierTrainConfig, save_classifier
    from latte.training.tasks.classifier import train_classifier

    data: dict = {}
    if args.config:
        data = load_yaml_mapping(args.config)
    if args.run_config:
        run_cfg = load_yaml_mapping(args.run_config, "run config")
        section = (run_cfg.get("data") or {})
        if section.get("kind") != "synthetic":
            raise ConfigError(f"{args.run_config}: data.kind is {section.get('kind')!r}, not 'synthetic'")
        data.setdefault("synthetic", section.get("synthetic") or {})
        data.setdefault("num_frames", section.get("num_frames", 16))
        data.setdefault("image_size", section.get("image_size", 32))
    apply_overrides(data, args.overrides)
    cfg = from_dict(ClassifierTrainConfig, data)
    model, metrics = train_classifier(cfg, progress=not args.no_progress)
    out = save_classifier(model, cfg, metrics, args.out)
    acc = ", ".join(f"{k} {v:.3f}" for k, v in metrics["val_accuracy"].items())
    print(f"validation accuracy: {acc}\nwrote {out / 'classifier.safetensors'} and {out / 'classifier.json'}")
    return 0
