"""No page runs inline script, and every page still finds its styles and
scripts under the Content-Security-Policy (gateway.security, docs/architecture.md §10).

Two nets: every HTML string of the gateway's modules and templates is read
for inline script, event-handler attributes, ``javascript:`` URLs and style
attributes (a page added tomorrow is caught before anyone renders it); and
pages are rendered with their services faked, then checked as a browser
would enforce the policy: every inline ``<style>`` allowed by a hash of the
response's own header, every linked sheet or script served from /static."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import gateway
from gateway import security, web
from gateway.api import carte as carte_views
from gateway.pages import accounts, agency_surveys, partners, surveys, undelivered_emails
from gateway.pages import carte_admin as carte_admin_pages
from tests.fakes import FakeRpc, signed_in

PACKAGE = Path(gateway.__file__).parent

# inline script: a <script> element without src (its body would run)
INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc\s*=)[^>]*>", re.I)
# onclick=, onload=, … inside a tag
EVENT_HANDLER = re.compile(r"<[a-z][^<>]*\son[a-z]+\s*=", re.I)
JAVASCRIPT_URL = re.compile(r"""(?:href|src|action|formaction)\s*=\s*["']?\s*javascript:""", re.I)
# style="…" attributes are inline styles CSP refuses without 'unsafe-inline'
STYLE_ATTRIBUTE = re.compile(r"<[a-z][^<>]*\sstyle\s*=", re.I)
LINKED = re.compile(r"""<(?:link[^>]*\bhref|script[^>]*\bsrc)\s*=\s*["']([^"']+)["']""", re.I)


def gateway_modules():
    names = ["gateway"]
    for info in pkgutil.walk_packages(gateway.__path__, "gateway."):
        names.append(info.name)
    return [importlib.import_module(name) for name in names]


def html_sources() -> list[tuple[str, str]]:
    """(where, text) for every string constant of the gateway's modules and
    every template file: where the pages' HTML is written."""
    sources = []
    for module in gateway_modules():
        for name, value in vars(module).items():
            if isinstance(value, str) and "<" in value:
                sources.append((f"{module.__name__}.{name}", value))
    for path in sorted((PACKAGE / "templates").rglob("*.html")):
        sources.append((str(path.relative_to(PACKAGE)), path.read_text(encoding="utf-8")))
    return sources


def test_the_scan_reads_the_pages_it_must_read():
    where = {name for name, _text in html_sources()}
    for expected in (
        "gateway.web.LAYOUT",
        "gateway.api.carte.FORM",
        "gateway.api.carte.PRINT",
        "gateway.pages.surveys.SURVEYS",
        "gateway.pages.accounts.REGISTRATION_FORM",
        "templates/partners/detail.html",
    ):
        assert expected in where
    # the patterns find what they are meant to find
    assert INLINE_SCRIPT.search("<p>x</p><script>alert(1)</script>")
    assert not INLINE_SCRIPT.search('<script src="/static/js/print.js" defer></script>')
    assert EVENT_HANDLER.search('<button type="button" onclick="go()">')
    assert JAVASCRIPT_URL.search('<a href="javascript:window.print()">')
    assert STYLE_ATTRIBUTE.search('<td style="color:red">')


@pytest.mark.parametrize(
    "pattern",
    [INLINE_SCRIPT, EVENT_HANDLER, JAVASCRIPT_URL, STYLE_ATTRIBUTE],
    ids=["inline-script", "event-handler", "javascript-url", "style-attribute"],
)
def test_no_page_string_or_template_holds_inline_script_or_style_attributes(pattern):
    found = [
        f"{where}: {match.group(0)[:80]}"
        for where, text in html_sources()
        for match in pattern.finditer(text)
    ]
    assert found == []


def test_inline_style_blocks_remain_only_in_the_modules_allowed_by_hash():
    legacy = tuple(f"{name}." for name in security.LEGACY_STYLE_MODULES)
    found = [
        where
        for where, text in html_sources()
        if security._STYLE_BLOCK.search(text) and not where.startswith(legacy)
    ]
    assert found == []


def test_every_sheet_and_script_a_page_links_is_a_file_the_gateway_serves():
    linked = {url for _where, text in html_sources() for url in LINKED.findall(text)}
    assert {"/static/css/surveys.css", "/static/js/print.js"} <= linked
    for url in linked:
        assert url.startswith("/static/"), url
        assert (PACKAGE / url.lstrip("/")).is_file(), url


# ---------------------------------------------------------------- rendered pages

BLANK_FORM = {
    "signed_in_as": "Vous êtes connecté en tant qu'établissement 0311234T",
    "campaign": {"label": "Rentrée 2026"},
    "prefilled": {"referent_uai": "0311234T", "concerned_uai": "0311234T"},
    "establishments": ["0311234T", "0311235U"],
    "labels": {},
    "choices": {"modality": {}, "measure": {}, "recruitment_zones": {}},
}
PRINT_VIEW = {
    "title": "Demande n° 7",
    "subtitle": "Ouverture",
    "signed_in_as": "Vous êtes connecté",
    "request": {"id": 7},
    "sections": [{"title": "A/ Établissement", "items": [{"label": "UAI", "value": "0311234T"}]}],
    "footer": "Imprimé le 01/01/2026",
}
ANSWERS = {
    "carte.new_request_form": BLANK_FORM,
    "carte.get_catalogue": {"levels": [], "variant_count": 0},
    "carte.print_request": PRINT_VIEW,
    "carte.list_campaigns": [],
    "identity.get_carte_me": {"signed_in_as": "Vous êtes connecté"},
    "survey.list_surveys": {"items": []},
    "survey.list_campaigns": [],
    "notify.list_partners": {"items": []},
    "notify.list_event_types": {"items": []},
    "notify.list_undelivered_emails": {"items": [], "total": 0},
}

PAGES = [  # (roles or None for a visitor, path, what the page must say)
    (None, "/", "Se connecter"),
    (None, "/connexion", "Mot de passe"),
    (None, "/mot-de-passe/oublie", "Recevoir un lien"),
    (None, "/invitation?token=t", "Activer mon compte"),
    (None, "/inscription", "SIRET"),
    (None, "/carte/connexion", "Identifiant"),
    (None, "/nulle-part", "introuvable"),
    (("carte_establishment",), "/carte/demandes/nouvelle", "Établissement de formation"),
    (("carte_establishment",), "/carte/demandes/7/impression", "Demande n° 7"),
    (("carte_admin",), "/carte/admin/campagnes", "Campagnes"),
    (("manager",), "/enquetes", "Enquêtes"),
    (("agency_admin",), "/agence/enquetes", "Nouvelle enquête"),
    (("agency_admin",), "/agence/partenaires", "Nouveau partenaire"),
    (("agency_admin",), "/agence/courriels", "Courriels non remis"),
]


@pytest.fixture
def app(make_app):
    return make_app(
        SESSION_SECRET="s" * 32,
        REVOCATION_SOURCE=lambda since: {"now": None, "revoked": []},
        RATELIMIT_ENABLED=False,
    )


@pytest.fixture
def fake(monkeypatch):
    fake = FakeRpc()
    fake.answers.update(ANSWERS)
    for module in (
        carte_views,
        carte_admin_pages,
        surveys,
        agency_surveys,
        partners,
        undelivered_emails,
    ):
        if hasattr(module, "rpc"):
            monkeypatch.setattr(module, "rpc", fake)
    return fake


def csp_sources(response, directive: str) -> list[str]:
    for part in response.headers["Content-Security-Policy"].split(";"):
        name, *sources = part.split()
        if name == directive:
            return sources
    return []


@pytest.mark.parametrize("roles, path, says", PAGES, ids=[p for _r, p, _s in PAGES])
def test_a_rendered_page_obeys_its_own_content_security_policy(app, fake, roles, path, says):
    client = signed_in(app, roles) if roles else app.test_client()
    response = client.get(path, headers={"Accept": "text/html"})
    assert response.mimetype == "text/html" and response.status_code in (200, 404)
    body = response.get_data(as_text=True)
    assert says in body
    assert not INLINE_SCRIPT.search(body) and not EVENT_HANDLER.search(body)
    assert not JAVASCRIPT_URL.search(body) and not STYLE_ATTRIBUTE.search(body)
    allowed = csp_sources(response, "style-src")
    for css in security._STYLE_BLOCK.findall(body):  # what a browser would apply
        assert security.style_hash(css) in allowed, f"inline <style> refused on {path}"
    for url in LINKED.findall(body):
        served = client.get(url)
        assert served.status_code == 200, url
        assert served.mimetype in ("text/css", "text/javascript", "application/javascript")


def test_the_carte_form_offers_the_establishments_without_script(app, fake):
    client = signed_in(app, ["carte_establishment"])
    body = client.get("/carte/demandes/nouvelle").get_data(as_text=True)
    assert '<input id="concerned_uai" name="concerned_uai" type="text" list="uais"' in body
    assert '<datalist id="uais"><option value="0311234T"><option value="0311235U">' in body


def test_the_print_button_appears_only_with_its_script(app, fake):
    client = signed_in(app, ["carte_establishment"])
    body = client.get("/carte/demandes/7/impression").get_data(as_text=True)
    assert '<span data-print hidden><button type="button">Imprimer</button>' in body
    assert '<script src="/static/js/print.js" defer></script>' in body
    script = (PACKAGE / "static/js/print.js").read_text(encoding="utf-8")
    assert "[data-print]" in script and "window.print()" in script


def test_the_sheets_keep_the_rules_of_the_inline_styles_they_replace():
    # the layout (gateway.web) and the account pages still write their own
    # <style>; site.css and accounts.css hold the same rules, ready to be linked
    def rules(css):
        css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
        return sorted(re.sub(r"\s+", "", rule) for rule in css.split("}") if rule.strip())

    for text, sheet in ((web.LAYOUT, "site.css"), (accounts.STYLE, "accounts.css")):
        inline = security._STYLE_BLOCK.findall(text)
        if not inline:  # moved to the sheet: the page links it
            assert f'href="/static/css/{sheet}"' in text
            continue
        served = (PACKAGE / "static/css" / sheet).read_text(encoding="utf-8")
        assert rules(served) == rules("".join(inline)), sheet
