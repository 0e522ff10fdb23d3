"""The gateway's HTML pages, one blueprint per area; their markup is in
``gateway/templates`` (each page extends ``base.html``)."""

from __future__ import annotations

from pathlib import Path

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def template_source(name: str) -> str:
    """The text of template ``name``: what the checks reading every page's
    markup (gateway/tests/test_security_pages.py) find under the names the
    pages' strings had before they became templates."""
    return (TEMPLATES / name).read_text(encoding="utf-8")
