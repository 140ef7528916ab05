"""``latte config-docs``: print the reference of every config key (Markdown)."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("config-docs", help="print the documentation of every config key (Markdown)")
    p.set_defaults(func=run)


def run(args) -> int:
    from latte.config_schema import all_sections
    from latte.config import render_docs

    for title, cls in all_sections():
        print(render_docs(cls, title=title))
    return 0
