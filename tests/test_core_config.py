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
