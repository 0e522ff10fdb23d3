"""The pages' templates: one layout that every page extends, the form
macros defined once, and the one French date filter."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

import gateway
from gateway.web import date_fr

TEMPLATES = Path(gateway.__file__).resolve().parent / "templates"
# included or imported pieces, not pages
PARTS = {"base.html", "_forms.html", "partners/_macros.html", "accounts/_user_form.html"}
PARTS |= {f"{area}/_page.html" for area in ("accounts", "surveys", "partners", "carte")}


def pages() -> list[Path]:
    return [
        path
        for path in sorted(TEMPLATES.rglob("*.html"))
        if path.relative_to(TEMPLATES).as_posix() not in PARTS
    ]


def test_every_page_template_extends_the_one_layout():
    layouts = {
        "base.html",
        "accounts/_page.html",
        "surveys/_page.html",
        "partners/_page.html",
        "carte/_page.html",
    }
    assert len(pages()) > 40
    for path in pages():
        extends = re.search(r'{%\s*extends\s+"([^"]+)"', path.read_text(encoding="utf-8"))
        assert extends and extends.group(1) in layouts, path
    for layout in layouts - {"base.html"}:  # areas add their sheets to the one layout
        assert re.search(
            r'{% extends "(base|surveys/_page)\.html" %}',
            (TEMPLATES / layout).read_text(encoding="utf-8"),
        )


def test_the_field_error_markup_is_written_once():
    for path in TEMPLATES.rglob("*.html"):
        text = path.read_text(encoding="utf-8")
        if path.name != "_forms.html":
            assert 'class="errors"' not in text, path
            assert not re.search(r"{%\s*macro\s+(errs|field|field_errors)\b", text), path


def test_pages_render_with_their_messages_in_the_layout(app):
    with app.test_request_context("/"):
        from flask import g

        from gateway.web import page
        from kit.context import Caller

        g.caller = Caller()  # a visitor: no navigation bar
        html, status, headers = page("Titre", error="Erreur", success="Fait")
    assert status == 200 and headers["Cache-Control"] == "no-store"
    assert "<title>Titre · Plateforme formations</title>" in html
    assert html.count("<h1>") == 1 and "<main>\n<h1>Titre</h1>" in html
    assert '<p class="error" role="alert">Erreur</p>' in html
    assert '<p class="ok" role="status">Fait</p>' in html


@pytest.mark.parametrize(
    "value, shown",
    [
        ("2021-07-15", "15/07/2021"),
        (dt.date(2026, 12, 6), "06/12/2026"),
        ("2020-01-15T23:30:00+00:00", "15/01/2020"),  # the date as written
        (dt.datetime(2020, 1, 15, 23, 30), "15/01/2020"),
        (None, ""),
        ("", ""),
        ("bientôt", "bientôt"),
    ],
)
def test_date_fr_writes_dates_the_french_way(value, shown):
    assert date_fr(value) == shown


def test_date_fr_with_time_writes_instants_in_france():
    assert date_fr("2020-12-07T11:26:04+00:00", time=True) == "07/12/2020 12:26:04"
    assert date_fr("2020-07-07T11:26:04+00:00", time=True) == "07/07/2020 13:26:04"
    assert date_fr("2020-12-07T11:26:04", time=True) == "07/12/2020 11:26:04"
    assert date_fr(None, time=True) == "" and date_fr("n/a", time=True) == "n/a"


def test_the_filter_is_registered_once_by_the_app_factory(app):
    assert app.jinja_env.filters["date_fr"] is date_fr
    rendered = app.jinja_env.from_string("{{ d|date_fr }} {{ t|date_fr(time=True) }}").render(
        d="2021-07-15", t="2020-12-07T11:26:04+00:00"
    )
    assert rendered == "15/07/2021 07/12/2020 12:26:04"
