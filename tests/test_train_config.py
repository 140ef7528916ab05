"""Run-config validation: errors name the key; shipped configs load."""

from pathlib import Path

import pytest

from latte.config import SHIPPED_CONFIGS, ConfigError, from_dict, load_yaml
from latte.training.config import RunConfig, load_run_config

CONFIGS = sorted(SHIPPED_CONFIGS.glob("*.yaml"))


def test_unknown_key_names_key_and_suggests():
    with pytest.raises(ConfigError, match=r"train\.learning_rate.*did you mean 'lr'|train\.lrr.*did you mean 'lr'"):
        from_dict(RunConfig, {"train": {"lrr": 1e-4}})


def test_unknown_section_suggests():
    with pytest.raises(ConfigError, match="unknown config key 'trian'.*did you mean 'train'"):
        from_dict(RunConfig, {"trian": {}})


def test_wrong_type_names_key():
    with pytest.raises(ConfigError, match=r"train\.max_steps: expected an integer, got 'many'"):
        from_dict(RunConfig, {"train": {"max_steps": "many"}})
    with pytest.raises(ConfigError, match=r"train\.precision: 'fp8' is not allowed"):
        from_dict(RunConfig, {"train": {"precision": "fp8"}})


@pytest.mark.parametrize("train, match", [
    ({"lr_schedule": "constant", "warmup_steps": 10}, r"train\.warmup_steps"),
    ({"ema_decay": 1.0}, r"train\.ema_decay"),
    ({"grad_accum": 0}, r"train\.grad_accum"),
    ({"min_lr": 1e-5}, r"train\.min_lr"),
    ({"distributed": "fsdp", "precision": "fp16"}, r"train\.precision"),
])
def test_impossible_combinations(train, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(RunConfig, {"train": train})


def test_cross_section_rules():
    with pytest.raises(ConfigError, match=r"validation\.class_labels"):
        from_dict(RunConfig, {"model": {"conditioning": "class", "num_classes": 3}, "validation": {"every": 5}})
    with pytest.raises(ConfigError, match=r"validation\.class_labels: every label"):
        from_dict(RunConfig, {"model": {"conditioning": "class", "num_classes": 3},
                              "validation": {"every": 5, "class_labels": [3]}})


def test_yaml_override_and_file_name_in_error(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  lr: 2.0e-4\n")
    cfg = load_run_config(path, ["train.batch_size=3"])
    assert cfg.train.lr == 2e-4 and cfg.train.batch_size == 3
    with pytest.raises(ConfigError, match=r"run\.yaml: .*train\.batch_size"):
        load_run_config(path, ["train.batch_size=0"])


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_validate(path):
    cfg = load_yaml(path, RunConfig)
    assert cfg.train.lr > 0


def test_cli_trains_tiny_config_and_reports_config_errors(tmp_path, capsys):
    from latte.cli import main

    config = "tiny_uncond"  # a shipped config, by name
    overrides = ["--set", f"train.run_dir={tmp_path}", "--set", "train.max_steps=1", "--set", "train.warmup_steps=0",
                 "--set", "train.lr_schedule=constant", "--set", "train.min_lr=0", "--set", "validation.every=0",
                 "--set", "train.batch_size=2", "--set", "data.synthetic.num_videos=4"]
    assert main(["train", str(config), *overrides, "--no-progress"]) == 0
    assert (tmp_path / "checkpoints" / "step_0000001" / "ema" / "model.safetensors").is_file()
    assert "%|" not in capsys.readouterr().err  # no progress bar
    assert main(["train", str(config), *overrides, "--set", "train.max_steps=2", "--resume"]) == 0
    assert "%|" in capsys.readouterr().err  # the bar, by default
    assert main(["train", str(config), "--set", "train.lrr=1"]) == 2
    assert "did you mean 'lr'" in capsys.readouterr().err
    assert main(["train", str(config), *overrides, "--resume", str(tmp_path / "nope")]) == 2
    assert main(["train", "tiny_uncnod"]) == 2  # an unknown name: the nearest shipped one is suggested
    assert "did you mean 'tiny_uncond'" in capsys.readouterr().err
    assert main(["train", str(SHIPPED_CONFIGS / "tiny_uncond.yaml"), *overrides, "--resume"]) == 0  # a path works


def test_every_shipped_config_is_package_data():
    """`pip install` (not editable) ships src/latte/configs through pyproject's package-data globs."""
    import fnmatch
    import tomllib

    globs = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["latte"]
    files = [str(p.relative_to(SHIPPED_CONFIGS.parent)) for p in SHIPPED_CONFIGS.rglob("*.yaml")]
    assert len(files) >= 18 and "configs/quickstart/latte.yaml" in files
    assert all(any(fnmatch.fnmatch(f, g) and f.count("/") == g.count("/") for g in globs) for f in files), files
