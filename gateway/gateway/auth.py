"""Authentication at the gateway, without an RPC per request.

Sign-in goes through identity once; the gateway then hands out a token it
signs itself (session id, user, organisation, roles). Each request checks the
signature and a per-process set of revoked session ids, which a background
thread refreshes from identity (``revoked_sessions``) every
``REVOCATION_POLL_SECONDS`` (1 s): sign-out, password changes and
deactivations take effect within about a second in every gunicorn worker,
and at once in the worker that handled them.

If the list could not be refreshed for more than ``REVOCATION_MAX_STALENESS``
seconds (default 300), authenticated requests fail closed with 503
``auth.unavailable``; anonymous requests are served. The bound is what a
revoked session may still be honoured by a gateway process that cannot reach
identity while identity itself still records revocations (a partial
failure: when identity is down, nothing can be revoked at all). Five minutes
is the usual lifetime of a short-lived access token, and long enough for
identity to restart or be rescheduled without taking every signed-in page
down. ``/health/ready`` reports the list's age and the bound.

Second factor (identity/totp.py): the token also carries where the session's
TOTP stands (``mfa``: ok | pending | enrol), whether the account has TOTP
(``totp``) and when a code was last given (``mfa_at``). A *half* session
(pending: a code is awaited; enrol: staff must enrol first) authenticates
nobody: it only opens the few endpoints of ``HALF_SESSION_ENDPOINTS``; pages
redirect to the code or enrolment page, the API answers 401
``auth.totp_required`` / ``auth.totp_enrolment_required``. The endpoints of
``SENSITIVE_ENDPOINTS`` (exports, validations, partner keys) want a code
given within ``TOTP_REAUTH_MINUTES`` (default 10) from accounts that have
TOTP: else 403 ``auth.reauthentication_required`` (API) or the
re-authentication page.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import threading
import time
import urllib.parse

from flask import current_app, g, redirect, request
from flask.sessions import NullSession, SessionInterface
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from kit.context import Caller
from kit.errors import Forbidden, ServiceError, Unauthenticated

log = logging.getLogger(__name__)

COOKIE = "session"
TOKEN_MAX_AGE = 12 * 3600


class AuthUnavailable(ServiceError):
    status = 503
    default_code = "auth.unavailable"
    default_message = "Le service d'authentification est momentanément indisponible."


class Revocations:
    """Revoked session ids, refreshed from identity by a daemon thread."""

    def __init__(self, fetch, interval: float = 1.0, max_staleness: float = 300.0):
        self.fetch = fetch  # fetch(since_iso | None) -> {"now", "revoked"}
        self.interval = interval
        self.max_staleness = max_staleness
        self.revoked: dict[str, float] = {}
        self.since: str | None = None
        self.fresh_at = 0.0
        self.lock = threading.Lock()
        self.loaded = threading.Event()
        self.stopped = threading.Event()
        self.pid = None

    def _poll_once(self) -> None:
        result = self.fetch(self.since)
        now = time.monotonic()
        with self.lock:
            for sid in result.get("revoked", []):
                self.revoked[sid] = now
            horizon = now - TOKEN_MAX_AGE
            for sid in [s for s, t in self.revoked.items() if t < horizon]:
                del self.revoked[sid]
            self.since = result.get("now")
            self.fresh_at = now
        self.loaded.set()

    def _run(self) -> None:
        while not self.stopped.is_set():
            try:
                self._poll_once()
            except Exception as exc:  # noqa: BLE001 - keep polling; staleness guards
                log.warning("revocation poll failed: %s", exc)
            self.stopped.wait(self.interval)

    def stop(self) -> None:
        """Ends the polling thread (tests; gunicorn workers just exit)."""
        self.stopped.set()

    def ensure_started(self) -> None:
        if self.pid != os.getpid():  # after gunicorn's fork: one thread per process
            with self.lock:
                if self.pid != os.getpid():
                    self.pid = os.getpid()
                    self.loaded.clear()
                    threading.Thread(target=self._run, name="revocations", daemon=True).start()

    def add(self, sid: str) -> None:
        with self.lock:
            self.revoked[sid] = time.monotonic()

    def age(self) -> float | None:
        """Seconds since the list was last refreshed (``None``: never loaded)."""
        with self.lock:
            if not self.loaded.is_set():
                return None
            return max(0.0, time.monotonic() - self.fresh_at)

    def is_revoked(self, sid: str) -> bool:
        self.ensure_started()
        if not self.loaded.wait(timeout=3):
            raise AuthUnavailable()
        with self.lock:
            if time.monotonic() - self.fresh_at > self.max_staleness:
                raise AuthUnavailable()
            return sid in self.revoked


REVOCATION_RPC_TIMEOUT = 2.0


def _rpc_fetch(app):
    """A dedicated client for the poller thread (clients are not thread-safe):
    the gateway's one RPC client, as the views' pool uses."""
    from gateway.amqp_rpc import AmqpRpcClient
    from kit.context import CALLER_KEY, SYSTEM

    state: dict = {}
    caller = Caller(user_id="gateway", roles=(SYSTEM,)).to_header()

    def fetch(since):
        client = state.get("client")
        if client is None or client.pid != os.getpid():
            client = state["client"] = AmqpRpcClient(
                app.config["AMQP_URI"], REVOCATION_RPC_TIMEOUT, connect_timeout=2.0
            )
        try:
            return client.call("identity", "revoked_sessions", (since,), {}, {CALLER_KEY: caller})
        except (OSError, ConnectionError):
            state.pop("client", None)
            client.close()
            raise

    return fetch


# One serializer per secret: building one costs more than checking a token.
_serializers: dict[str, URLSafeTimedSerializer] = {}


def _serializer() -> URLSafeTimedSerializer:
    secret = current_app.config["SESSION_SECRET"]
    serializer = _serializers.get(secret)
    if serializer is None:
        serializer = _serializers[secret] = URLSafeTimedSerializer(secret, salt="session-v1")
    return serializer


def issue_token(session_id: str, claims: dict) -> str:
    return _serializer().dumps(
        {
            "sid": session_id,
            "uid": claims["user_id"],
            "org": claims.get("org_id"),
            "roles": claims.get("roles", []),
            "managed": claims.get("managed_org_ids", []),
            "mfa": claims.get("mfa", "ok"),
            "totp": bool(claims.get("totp")),
            "mfa_at": claims.get("mfa_at"),
            # who submits (survey.transmit records it without asking identity)
            "name": claims.get("name"),
            "email": claims.get("email"),
        }
    )


def _request_token() -> str | None:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[7:].strip() or None
    return request.cookies.get(COOKIE)


def _load_caller() -> None:
    g.session_id = None
    g.half_session = None  # "pending" | "enrol" for a session awaiting its second factor
    g.totp_enrolled = False
    g.mfa_at = None
    g.submitter = None  # {name, email} of the signed-in person (survey.transmit)
    request_id = g.get("request_id")
    g.caller = Caller(request_id=request_id)
    token = _request_token()
    if not token:
        return
    try:
        data = _serializer().loads(token, max_age=TOKEN_MAX_AGE)
    except (SignatureExpired, BadSignature):
        return
    if not isinstance(data, dict) or current_app.extensions["revocations"].is_revoked(
        data.get("sid", "")
    ):
        return
    g.session_id = data["sid"]
    g.totp_enrolled = bool(data.get("totp"))
    g.mfa_at = _parse_time(data.get("mfa_at"))
    if data.get("mfa", "ok") != "ok":
        g.half_session = data.get("mfa")
        g.half_roles = tuple(data.get("roles") or ())
        return  # authenticates nobody: see HALF_SESSION_ENDPOINTS
    g.caller = Caller(
        user_id=data.get("uid"),
        org_id=data.get("org"),
        roles=tuple(data.get("roles") or ()),
        request_id=request_id,
        managed_org_ids=tuple(data.get("managed") or ()),
    )
    name, email = data.get("name"), data.get("email")
    if isinstance(name, str) and isinstance(email, str) and name and email:
        g.submitter = {"name": name, "email": email}


def _parse_time(value) -> dt.datetime | None:
    try:
        parsed = dt.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
    if parsed is not None and parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed


# What a half session may reach, besides signing in and out again.
HALF_SESSION_ENDPOINTS = {
    "pending": {"identity_api.verify_totp", "web.totp_sign_in"},
    "enrol": {
        "identity_api.begin_totp_enrolment",
        "identity_api.confirm_totp_enrolment",
        "account_pages.totp_page",
    },
}
ALWAYS_OPEN = {
    "static",
    "web.sign_in",
    "identity_api.sign_in",
    "carte_api.sign_in",
    "carte_pages.sign_in_page",
    "account_pages.sign_out_page",
    "carte_pages.sign_out_page",
}
HALF_SESSION_PAGES = {"pending": "/connexion/code", "enrol": "/compte/double-authentification"}
HALF_SESSION_ERRORS = {
    "pending": (
        "auth.totp_required",
        "Saisissez le code de votre application d'authentification (POST /api/v1/sessions/totp).",
    ),
    "enrol": (
        "auth.totp_enrolment_required",
        "Activez d'abord la double authentification, obligatoire pour ce compte "
        "(POST /api/v1/me/totp/enrolment).",
    ),
}

# Sensitive actions: a fresh TOTP code first (accounts that have TOTP).
SENSITIVE_ENDPOINTS = frozenset(
    {
        "identity_api.validate_user",
        "account_pages.validate_user_page",
        "account_pages.validate_registration_page",
        "survey_api.export_campaign",
        "carte_api.export_xlsx",
        "carte_api.export_csv",
        "partners_admin_api.create_key",
        "partners_admin_api.revoke_key",
        "partner_pages.create_key",
        "partner_pages.revoke_key",
    }
)
REAUTH_PAGE = "/compte/reauthentification"


def _is_api() -> bool:
    return request.path.startswith("/api/")


def _second_factor_gate():
    """Half sessions reach only their own step; sensitive actions want a
    fresh code (module docstring)."""
    endpoint = request.endpoint or ""
    state = g.get("half_session")
    if state:
        if endpoint in ALWAYS_OPEN or endpoint in HALF_SESSION_ENDPOINTS.get(state, ()):
            return None
        if endpoint.startswith(("health.", "openapi.")):
            return None
        if _is_api():
            raise Unauthenticated(*HALF_SESSION_ERRORS[state])
        return redirect(HALF_SESSION_PAGES[state], code=303)
    if endpoint in SENSITIVE_ENDPOINTS and g.caller.authenticated and not fresh_second_factor():
        if _is_api():
            raise Forbidden(
                "auth.reauthentication_required",
                "Action sensible : saisissez d'abord un nouveau code de votre application "
                "d'authentification (POST /api/v1/sessions/current/reauthentication).",
            )
        return redirect(f"{REAUTH_PAGE}?suite={urllib.parse.quote(_back_path())}", code=303)
    return None


def _back_path() -> str:
    """Where to come back after re-authenticating: the page the form was on."""
    referrer = urllib.parse.urlsplit(request.referrer or "")
    if referrer.netloc and referrer.netloc != request.host:
        return "/"
    path = referrer.path if request.method != "GET" else request.path
    return safe_next(path or "/")


def safe_next(value) -> str:
    """A local path to redirect to (never another site)."""
    if not isinstance(value, str) or not value.startswith("/") or value.startswith("//"):
        return "/"
    if "\\" in value or any(ord(c) < 32 for c in value):
        return "/"
    return value


def fresh_second_factor() -> bool:
    """True unless the account has TOTP and no code was given lately."""
    if not g.get("totp_enrolled"):
        return True
    mfa_at = g.get("mfa_at")
    if mfa_at is None:
        return False
    minutes = float(
        current_app.config.get("TOTP_REAUTH_MINUTES") or os.environ.get("TOTP_REAUTH_MINUTES", 10)
    )
    age = dt.datetime.now(dt.UTC) - mfa_at
    return dt.timedelta(0) <= age + dt.timedelta(seconds=5) and age <= dt.timedelta(minutes=minutes)


def home_for(roles) -> str:
    """Where a sign-in lands: carte accounts on the carte, others at home."""
    return "/carte/" if any(str(r).startswith("carte_") for r in roles or ()) else "/"


def revoke_current() -> None:
    if g.get("session_id"):
        current_app.extensions["revocations"].add(g.session_id)


def login_required(view):
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if not g.caller.authenticated:
            raise Unauthenticated("unauthenticated", "Connectez-vous pour continuer.")
        return view(*args, **kwargs)

    return wrapped


def agency_required(view):
    @functools.wraps(view)
    @login_required
    def wrapped(*args, **kwargs):
        if not g.caller.is_agency:
            raise Forbidden("forbidden.agency_only", "Réservé aux agents de France compétences.")
        return view(*args, **kwargs)

    return wrapped


def set_session_cookie(response, token: str) -> None:
    secure = request.is_secure or current_app.config.get("PUBLIC_URL", "").startswith("https://")
    response.set_cookie(
        COOKIE, token, max_age=TOKEN_MAX_AGE, httponly=True, samesite="Lax", secure=secure
    )


def clear_session_cookie(response) -> None:
    response.delete_cookie(COOKIE)


class _NoFlaskSession(NullSession):
    def _fail(self, *args, **kwargs):
        raise RuntimeError(
            "the gateway keeps no Flask session: its cookie "
            f"{COOKIE!r} is the signed token of gateway.auth"
        )

    __setitem__ = __delitem__ = clear = pop = popitem = update = setdefault = _fail


class _NoFlaskSessions(SessionInterface):
    """Flask would open a signed-cookie session on every request (building a
    serializer and parsing cookies) for nothing, and under the same cookie
    name as our token: the gateway has no use for it."""

    def open_session(self, app, request):
        return None  # Flask then uses make_null_session()

    def make_null_session(self, app):
        return _NoFlaskSession()

    def save_session(self, app, session, response) -> None:
        pass


def init_app(app) -> None:
    app.session_interface = _NoFlaskSessions()
    fetch = app.config.get("REVOCATION_SOURCE") or _rpc_fetch(app)
    app.extensions["revocations"] = Revocations(
        fetch,
        interval=float(app.config.get("REVOCATION_POLL_SECONDS", 1.0)),
        max_staleness=float(app.config.get("REVOCATION_MAX_STALENESS", 300.0)),
    )
    app.before_request(_load_caller)
    app.before_request(_second_factor_gate)
