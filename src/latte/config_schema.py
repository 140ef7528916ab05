"""The documented config sections, in the order ``latte config-docs`` prints them (``docs/config.md``)."""
from __future__ import annotations


def all_sections() -> list[tuple[str, type]]:
    from latte.training.config import RunConfig

    return [("Run configuration (latte train)", RunConfig)]
