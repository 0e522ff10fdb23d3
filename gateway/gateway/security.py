"""Browser hardening of every gateway answer: security headers, and refusal of
cross-site form posts (CSRF).

A small ``after_request`` hook rather than flask-talisman: talisman is not in
the packages this project installs, and of what it does we need the headers
only (its CSRF-free design, nonce machinery and forced https redirect would be
dead weight or wrong behind the ingress). Flask runs ``after_request`` on every
response it finalises, error pages, 404s, redirects and static files included.

Headers
-------
- ``Content-Security-Policy``. HTML answers get :data:`PAGE_POLICY`: scripts
  from our origin only (no inline script, no event-handler attribute, no
  ``javascript:`` URL, no ``eval``), styles from our origin only
  (``gateway/static/css``), images from our origin or ``data:`` (a QR code),
  no plugins, no ``<base>``, forms posted to our origin only, never framed
  (``frame-ancestors 'none'``). Every other answer (JSON, stored files, CSS,
  JS) gets :data:`DATA_POLICY`, ``default-src 'none'``: nothing in it is meant
  to run, even if a browser renders an uploaded HTML or SVG file. PDFs (the
  carte request's PDF is shown inline) get :data:`PDF_POLICY`, framing only:
  browsers' PDF viewers are not governed by the document's CSP, and a
  restrictive one has broken some of them.
  Inline ``<style>`` blocks still written in modules this one does not own
  (:data:`LEGACY_STYLE_MODULES`: the layout of ``gateway.web`` and the account
  pages) are allowed by their SHA-256 hash, computed at start-up from those
  modules' strings; once they link ``/static/css/site.css`` and
  ``/static/css/accounts.css`` instead, no hash is left. Hashes rather than a
  per-response nonce: a nonce would need every template to print it, and a
  hash needs no edit and still refuses any style an attacker injects.
- ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY`` (browsers
  without ``frame-ancestors``), ``Cross-Origin-Opener-Policy: same-origin``,
  ``Permissions-Policy`` turning off what no page uses (camera, microphone,
  geolocation, payment, USB).
- ``Referrer-Policy: same-origin`` on every answer, replacing a view's
  ``no-referrer``: no URL (with its token: invitations, resets) ever leaves
  for another site, and our own form posts keep their ``Origin`` header,
  which ``no-referrer`` turns into ``Origin: null`` (the fallback check below
  needs it).
- ``Strict-Transport-Security`` only when the request came over https:
  ``request.is_secure``, which behind the ingress comes from its
  ``X-Forwarded-Proto`` (:func:`init_app` installs werkzeug's ``ProxyFix``
  for that header alone, trusting as many hops as ``TRUSTED_PROXIES``, the
  same trust as ``ratelimit.client_ip`` gives ``X-Forwarded-For``). The
  session cookie is ``Secure`` on such requests too (``gateway.auth``).

CSRF
----
Every unsafe request (POST, PUT, PATCH, DELETE) is refused with 403
``request.cross_site`` when the browser says it comes from another site:

1. ``Sec-Fetch-Site`` (Fetch Metadata, sent by every current browser on
   https and localhost): ``same-origin`` or ``none`` (typed by the user)
   passes, ``same-site`` and ``cross-site`` are refused;
2. without it (plain http, older browsers), ``Origin``: it passes when its
   host is the request's ``Host`` or it is ``PUBLIC_URL``'s origin; anything
   else, ``null`` included, is refused;
3. with neither header the request is not from a browser that can be tricked
   (curl, a partner's server) and passes; the session cookie is
   ``SameSite=Lax`` besides, so a browser too old for both headers sends no
   cookie on a cross-site POST anyway.

This is the check of Go's ``net/http.CrossOriginProtection`` and of the OWASP
cheat sheet's Fetch Metadata defence. It covers every form of every page,
today's and tomorrow's, without a token in each template (the pages are
Python strings in a dozen modules owned by several people), without a token
store, and without « page expirée » errors after a long form. Requests that
authenticate with a header (``Authorization: Bearer …``, ``X-Api-Key``) are
not checked: a browser cannot attach such a header to a cross-site request
without a CORS preflight, which the gateway never grants, so bearer tokens
and partner keys are not CSRF-prone and the API keeps working as before.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import logging
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, request
from werkzeug.middleware.proxy_fix import ProxyFix

from gateway.errors import GatewayError

log = logging.getLogger(__name__)

EXTENSION = "gateway.security"

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CROSS_SITE_CODE = "request.cross_site"
CROSS_SITE_MESSAGE = (
    "Requête refusée : ce formulaire a été envoyé depuis un autre site. "
    "Revenez sur la plateforme, rechargez la page et réessayez."
)

# modules whose inline <style> blocks are allowed by hash until they move to
# gateway/static/css (this module's owner does not edit them)
LEGACY_STYLE_MODULES: tuple[str, ...] = ()  # none left: every page links its sheets
_STYLE_BLOCK = re.compile(r"<style>(.*?)</style>", re.S)

PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'{style_hashes}; "
    "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
DATA_POLICY = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
PDF_POLICY = "frame-ancestors 'none'"
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"
HSTS_MAX_AGE = 365 * 24 * 3600


def style_hash(css: str) -> str:
    """The CSP source allowing the inline ``<style>`` whose text is ``css``."""
    digest = hashlib.sha256(css.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def inline_style_hashes(texts: Iterable[str]) -> list[str]:
    """The hash sources of every ``<style>`` block found in ``texts``."""
    found = {style_hash(css) for text in texts for css in _STYLE_BLOCK.findall(text)}
    return sorted(found)


def _module_strings(names: Iterable[str]) -> list[str]:
    texts: list[str] = []
    for name in names:
        try:
            module = importlib.import_module(name)
        except ImportError:  # renamed or gone: nothing left to allow
            continue
        texts.extend(value for value in vars(module).values() if isinstance(value, str))
    return texts


def page_policy(style_hashes: Iterable[str] = ()) -> str:
    sources = "".join(f" {source}" for source in style_hashes)
    return PAGE_POLICY.format(style_hashes=sources)


# ---------------------------------------------------------------- headers


def _set_headers(response: Response) -> Response:
    settings = current_app.extensions[EXTENSION]
    headers = response.headers
    if response.mimetype == "text/html":
        headers["Content-Security-Policy"] = settings["page_policy"]
    elif response.mimetype == "application/pdf":
        headers["Content-Security-Policy"] = PDF_POLICY
    else:
        headers["Content-Security-Policy"] = DATA_POLICY
    headers["X-Content-Type-Options"] = "nosniff"
    headers["X-Frame-Options"] = "DENY"
    headers["Referrer-Policy"] = "same-origin"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    headers["Permissions-Policy"] = PERMISSIONS_POLICY
    if request.is_secure:
        headers["Strict-Transport-Security"] = f"max-age={settings['hsts_max_age']}"
    return response


# ---------------------------------------------------------------- CSRF


def _authenticated_by_header() -> bool:
    """Bearer tokens and partner keys: no browser sends them cross-site."""
    return request.headers.get("Authorization", "").startswith("Bearer ") or bool(
        request.headers.get("X-Api-Key", "").strip()
    )


def _origin_is_ours(origin: str) -> bool:
    if origin == "null":
        return False
    parts = urlsplit(origin)
    if parts.netloc and parts.netloc.lower() == request.host.lower():
        return True
    public = urlsplit(current_app.config.get("PUBLIC_URL") or "")
    return bool(public.netloc) and (parts.scheme, parts.netloc.lower()) == (
        public.scheme,
        public.netloc.lower(),
    )


def cross_site_reason() -> str | None:
    """Why the current request is refused as cross-site, or ``None``."""
    if request.method not in UNSAFE_METHODS or _authenticated_by_header():
        return None
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return None if site in ("same-origin", "none") else f"Sec-Fetch-Site={site}"
    origin = request.headers.get("Origin")
    if origin is not None and not _origin_is_ours(origin):
        return f"Origin={origin}"
    return None


def _refuse_cross_site() -> None:
    reason = cross_site_reason()
    if reason is not None:
        log.info("cross-site %s %s refused (%s)", request.method, request.path, reason[:200])
        raise GatewayError(403, CROSS_SITE_CODE, CROSS_SITE_MESSAGE)


def init_app(app: Flask) -> None:
    """After ``errors.init_app`` (refusals carry the request id) and before
    the blueprints: the cross-site check runs before any view reads a body."""
    hops = int(app.config.get("TRUSTED_PROXIES") or 0)
    if hops:
        # only the scheme: X-Forwarded-For is read by ratelimit.client_ip
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=0, x_proto=hops, x_host=0)
    hashes = inline_style_hashes(_module_strings(LEGACY_STYLE_MODULES))
    app.extensions[EXTENSION] = {
        "page_policy": page_policy(hashes),
        "hsts_max_age": int(app.config.get("HSTS_MAX_AGE", HSTS_MAX_AGE)),
    }
    app.before_request(_refuse_cross_site)
    app.after_request(_set_headers)
