"""Typed, validated configuration.

Every config section is a dataclass whose fields are declared with :func:`option`, which records a help text
(``docs/config.md`` is generated from it by ``latte config-docs``). :func:`from_dict` turns plain data (parsed
YAML) into those dataclasses and rejects anything it cannot account for:

* an unknown key is an error naming the key and the nearest valid one (a renamed key, listed in the
  class attribute ``RENAMED = {old: new}``, names its new name);
* a value of the wrong type is an error naming the key, the expected type and the value;
* a dataclass may define ``validate(self)`` for cross-field rules and raise :class:`ConfigError`.

Supported field types: ``bool``, ``int``, ``float``, ``str``, ``Optional[T]``, ``Literal[...]``, ``list[T]``,
``tuple[T, ...]``, ``dict[str, T]`` and nested config dataclasses.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml

__all__ = [
    "ConfigError",
    "option",
    "from_dict",
    "to_dict",
    "load_yaml",
    "apply_overrides",
    "field_help",
    "render_docs",
]


class ConfigError(ValueError):
    """A configuration problem; the message names the key and what is allowed."""


def option(default: Any = dataclasses.MISSING, help: str = "", *, factory: Any = dataclasses.MISSING) -> Any:
    """A documented dataclass field. Use ``factory`` for mutable defaults (lists, dicts, nested sections)."""
    if not help:
        raise ValueError("every config option needs a help text")
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


def field_help(cls: type, name: str) -> str:
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.metadata.get("help", "")
    raise KeyError(name)


def _nearest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    return f"; did you mean '{close[0]}'?" if close else ""


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(tp) if a is not Ellipsis)
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not allowed; choose one of {', '.join(repr(a) for a in args)}"
                              f"{_nearest(str(value), [str(a) for a in args])}")
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: expected {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping (section {tp.__name__}), got {value!r}")
        return from_dict(tp, value, prefix=key)
    if origin in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        item_tp = args[0] if args else Any
        items = [_convert(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        val_tp = args[1] if len(args) == 2 else Any
        return {str(k): _convert(v, val_tp, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads "1e-4" as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported config type {tp!r}")


def from_dict(cls: type, data: dict, prefix: str = "") -> Any:
    """Build the config dataclass ``cls`` from ``data``, validating every key (see module docstring)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        renamed = getattr(cls, "RENAMED", {})
        if key in renamed:
            new = f"{prefix}.{renamed[key]}" if prefix else renamed[key]
            raise ConfigError(f"config key '{full}' was renamed: use '{new}'")
        if key not in fields:
            raise ConfigError(f"unknown config key '{full}'{_nearest(str(key), list(fields))} "
                              f"(valid keys: {', '.join(fields)})")
        kwargs[key] = _convert(value, hints[key], full)
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except ConfigError as e:
            raise ConfigError(f"{prefix}: {e}" if prefix and not str(e).startswith(prefix) else str(e)) from None
    return obj


def to_dict(obj: Any) -> Any:
    """Plain-data (YAML/JSON-safe) form of a config dataclass."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``key.sub=value`` overrides (value parsed as YAML) to nested plain data, in place."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key.sub=value")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw != "" else None
        node = data
        parts = key.strip().split(".")
        for p in parts[:-1]:
            if node.get(p) is None:
                node[p] = {}
            node = node[p]
            if not isinstance(node, dict):
                raise ConfigError(f"override '{item}': '{p}' is not a section")
        node[parts[-1]] = value
    return data


SHIPPED_CONFIGS = Path(__file__).resolve().parent / "configs"  # package data: the recipes and tiny configs


def shipped_config_names() -> list[str]:
    """Names of the shipped configs (``ucf101``, ``tiny_t2v``, ``vae/tiny_shapes``, ``quickstart/latte``, ...)."""
    return sorted(str(p.relative_to(SHIPPED_CONFIGS).with_suffix("")) for p in SHIPPED_CONFIGS.rglob("*.yaml"))


def resolve_config(name_or_path: str | Path) -> Path:
    """A config file: an existing path, else a shipped config by name (``ucf101`` or ``vae/tiny_shapes``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = SHIPPED_CONFIGS / (str(name_or_path) if path.suffix == ".yaml" else f"{name_or_path}.yaml")
    if shipped.is_file():
        return shipped
    names = shipped_config_names()
    raise ConfigError(f"config file not found: {path} (not a file, nor a shipped config name"
                      f"{_nearest(str(name_or_path), names)}; shipped: {', '.join(names)})")


def load_yaml(path: str | Path, cls: type, overrides: list[str] | None = None) -> Any:
    """Read a YAML config file (a path or a shipped config name, see :func:`resolve_config`), apply ``--set``
    overrides and validate it into ``cls``."""
    path = resolve_config(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    apply_overrides(data, overrides or [])
    try:
        return from_dict(cls, data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def render_docs(cls: type, title: str | None = None, _prefix: str = "") -> str:
    """Markdown table of every key of ``cls`` (recursively), with type, default and help."""
    lines = []
    if title:
        lines += [f"## {title}", ""]
    lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
    nested = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{_prefix}{f.name}"
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            nested.append((key, tp))
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = to_dict(f.default_factory())  # type: ignore[misc]
        else:
            default = "(required)"
        lines.append(f"| `{key}` | {_type_name(tp).replace('|', '/')} | `{default!r}` | "
                     f"{f.metadata.get('help', '').replace('|', '/')} |")
    has_rows = len(lines) > (4 if title else 2)
    out = "\n".join(lines if has_rows else lines[:2 if title else 0]) + "\n"
    for key, tp in nested:
        out += "\n" + render_docs(tp, title=f"`{key}` ({tp.__name__})", _prefix=f"{key}.")
    return out
