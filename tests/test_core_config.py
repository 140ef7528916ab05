"""The typed config machinery and its generated reference."""
from dataclasses import dataclass
from pathlib import Path

import pytest

from latte.config import ConfigError, apply_overrides, from_dict, load_yaml, option, to_dict


@dataclass
class Inner:
    rate: float = option(1e-4, "a rate")
    names: list[str] = option(help="names", factory=list)


@dataclass
class Outer:
    steps: int = option(10, "steps")
    inner: Inner = option(help="inner section", factory=Inner)


def test_unknown_key_suggests_nearest_and_types_are_checked():
    with pytest.raises(ConfigError, match=r"unknown config key 'inner.rte'; did you mean 'rate'"):
        from_dict(Outer, {"inner": {"rte": 1}})
    with pytest.raises(ConfigError, match="steps: expected an integer"):
        from_dict(Outer, {"steps": "many"})
    cfg = from_dict(Outer, {"inner": {"rate": "3e-4", "names": ["a"]}})  # YAML reads 3e-4 as a string
    assert cfg.inner.rate == 3e-4 and to_dict(cfg) == {"steps": 10, "inner": {"rate": 3e-4, "names": ["a"]}}


def test_yaml_with_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 3\n")
    cfg = load_yaml(path, Outer, ["inner.rate=0.5", "inner.names=[x, y]"])
    assert cfg.steps == 3 and cfg.inner.rate == 0.5 and cfg.inner.names == ["x", "y"]
    with pytest.raises(ConfigError, match="c.yaml: unknown config key 'stepz'"):
        load_yaml(path, Outer, ["stepz=1"])
    assert apply_overrides({}, ["a.b=1"]) == {"a": {"b": 1}}


def test_option_requires_help():
    with pytest.raises(ValueError):
        option(1, "")


def test_config_reference_is_up_to_date():
    """docs/config.md documents every key of every config file (regenerate: latte config-docs > docs/config.md)."""
    from latte.cli.config_docs import render_all

    docs = Path(__file__).resolve().parents[1] / "docs" / "config.md"
    assert docs.read_text() == render_all()


@dataclass
class Bounded:
    lr: float = option(1e-4, "a rate", above=0.0, max=1.0)
    betas: tuple[float, ...] = option((0.9, 0.999), "betas", min=0.0, below=1.0)
    width: int = option(8, "a size", min=1)
    note: float = option(0.5, "unbounded float")


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "nan", "inf"])
def test_non_finite_floats_are_rejected_with_the_key(value):
    import yaml

    data = {"inner": {"rate": yaml.safe_load(value)}}
    with pytest.raises(ConfigError, match=r"inner.rate: expected a finite number"):
        from_dict(Outer, data)
    with pytest.raises(ConfigError, match=r"note: expected a finite number"):
        from_dict(Bounded, apply_overrides({}, [f"note={value}"]))


def test_ranges_are_checked_and_documented():
    with pytest.raises(ConfigError, match=r"lr: 0.0 is out of range \(expected 0.0 < x <= 1.0\)"):
        from_dict(Bounded, {"lr": 0})
    with pytest.raises(ConfigError, match=r"lr: 1e\+38 is out of range"):
        from_dict(Bounded, {"lr": 1e38})
    with pytest.raises(ConfigError, match=r"betas\[1\]: 1.0 is out of range \(expected 0.0 <= x < 1.0\)"):
        from_dict(Bounded, {"betas": [0.9, 1.0]})
    with pytest.raises(ConfigError, match=r"width: 0 is out of range \(expected 1 <= x\)"):
        from_dict(Bounded, {"width": 0})
    assert from_dict(Bounded, {"lr": 1.0, "betas": [0.0, 0.5]}).lr == 1.0
    from latte.config import render_docs

    docs = render_docs(Bounded)
    assert "(range: 0.0 < x <= 1.0)" in docs and "(range: 1 <= x)" in docs


@pytest.mark.parametrize("change,message", [
    ({"num_heads": 0}, r"model.num_heads: 0 is out of range"),
    ({"num_heads": 5}, r"hidden_size \(32\) must be divisible by model.num_heads \(5\)"),
    ({"depth": 0}, r"model.depth: 0 is out of range"),
    ({"patch_size": 3}, r"model.input_size \(8\) must be divisible by model.patch_size \(3\)"),
    ({"patch_size": -2}, r"model.patch_size: -2 is out of range"),
    ({"hidden_size": -32}, r"model.hidden_size: -32 is out of range"),
    ({"input_size": 0}, r"model.input_size: 0 is out of range"),
    ({"num_frames": -1}, r"model.num_frames: -1 is out of range"),
    ({"mlp_ratio": float("nan")}, r"model.mlp_ratio: expected a finite number"),
    ({"mlp_ratio": 0}, r"model.mlp_ratio: 0.0 is out of range"),
])
def test_model_sizes_out_of_range_rejected_before_the_run_directory(tmp_path, capsys, change, message):
    import yaml

    from latte.cli import main
    from latte.models import LatteConfig

    base = dict(input_size=8, num_frames=4, hidden_size=32, depth=2, num_heads=2)
    with pytest.raises(ConfigError, match=message):
        from_dict(LatteConfig, {**base, **change}, prefix="model")
    if "mlp_ratio" not in change:
        with pytest.raises(ConfigError, match=message):  # programmatic construction validates the same
            LatteConfig(**base).replace(**change)
    run_dir = tmp_path / "run"
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"model": {**base, **change}, "autoencoder": {"kind": "identity"},
                                      "train": {"run_dir": str(run_dir), "max_steps": 1}}))
    assert main(["train", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("latte train: error: ") and str(config) in err and "Traceback" not in err
    assert not run_dir.exists()


def test_override_values_that_are_not_yaml_name_the_override():
    with pytest.raises(ConfigError, match=r"override 'inner.rate=\[1': the value is not valid YAML"):
        apply_overrides({}, ["inner.rate=[1"])
    with pytest.raises(ConfigError, match="'steps' is not a section"):
        apply_overrides({"steps": 3}, ["steps.x=1"])
