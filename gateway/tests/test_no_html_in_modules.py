"""The pages' markup lives in templates (gateway/templates), never in Python
strings: every string constant of the page modules (gateway/pages), the
layout module (gateway/web.py) and the API modules (gateway/api) is read
from the source, and none may hold an HTML tag."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import gateway

PACKAGE = Path(gateway.__file__).resolve().parent
TAG = re.compile(
    r"<(html|div|form|p|a|table|input|ul|li|h[1-6]|label|button|section|nav|span|tr|td|th)\b",
    re.I,
)


def modules() -> list[Path]:
    return sorted(
        [PACKAGE / "web.py", *(PACKAGE / "pages").rglob("*.py"), *(PACKAGE / "api").rglob("*.py")]
    )


def html_strings(source: str) -> list[tuple[int, str]]:
    """(line, excerpt) of every string constant, f-string part included, holding a tag."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = TAG.search(node.value)
            if match:
                excerpt = node.value[match.start() : match.start() + 60]
                found.append((node.lineno, excerpt))
    return found


def test_the_scan_finds_markup_in_a_string_and_ignores_comparisons():
    assert html_strings('BODY = """<p>Bonjour</p>"""')
    assert html_strings("page = f'<table>{rows}</table>'")
    assert html_strings("x = ('<form method=\"post\">' + y)")
    assert not html_strings("ok = a < b and '<=' != c  # <p> in a comment")
    assert not html_strings('"""Docstring naming ``base.html`` and a ``<main>`` element."""')


def test_the_scan_reads_the_modules_it_must_read():
    names = {path.relative_to(PACKAGE).as_posix() for path in modules()}
    assert {"web.py", "pages/accounts.py", "pages/carte.py", "api/carte.py"} <= names


def test_no_page_module_writes_html_in_a_string():
    found = [
        f"{path.relative_to(PACKAGE)}:{line}: {excerpt!r}"
        for path in modules()
        for line, excerpt in html_strings(path.read_text(encoding="utf-8"))
    ]
    assert found == []
