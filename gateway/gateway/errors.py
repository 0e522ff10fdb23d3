"""The one place where failures become HTTP answers.

Every error leaves the gateway as ``application/problem+json`` (RFC 9457) with a
stable ``code`` clients can rely on and a French ``title`` for people. The
table in :func:`problem_for` is the whole mapping: typed service errors keep
their status, code, message and details; bus failures become 503/504 with
``Retry-After``; anything unexpected is a logged 500 that leaks nothing.

« État inconnu »: when a request that changes something was sent to a
service and no answer came back (the link failed after sending: 503
``service.outcome_unknown``; the timeout passed: 504 ``service.timeout``),
the service may have acted before the call's deadline. The title says so,
``details.outcome`` is ``"unknown"``, and a retry with the same
``Idempotency-Key`` is safe. Reads (GET, HEAD) keep the plain titles.

The request id lives here too because every problem carries it, and the RPC
module forwards it to services in the caller context.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import uuid
from dataclasses import dataclass, field
from html import escape
from typing import Any

import amqp.exceptions
import kombu.exceptions
from flask import Flask, Response, current_app, g, request
from nameko.exceptions import RemoteError, RpcTimeout, UnknownService
from werkzeug.exceptions import HTTPException

from gateway.amqp_rpc import OutcomeUnknown
from kit.errors import ServiceError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
REQUEST_ID_HEADER = "X-Request-Id"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")

# Seconds a client should wait before retrying after a bus failure.
RETRY_AFTER_SERVICE = 5
RETRY_AFTER_BROKER = 10


class GatewayError(ServiceError):
    """An error raised by the gateway itself (never sent over the bus)."""

    def __init__(self, status: int, code: str, message: str, details: dict | None = None):
        super().__init__(code, message, details)
        self.status = status


class BrokerUnavailable(Exception):
    """The message broker could not be reached; raised from the original error."""


# code -> (status, French title): the catalogue documented in openapi.yaml.
CATALOGUE: dict[str, tuple[int, str]] = {
    "invalid_input": (422, "Certaines données sont invalides."),
    "unauthenticated": (401, "Authentification requise."),
    "forbidden": (403, "Vous n'avez pas les droits nécessaires."),
    "not_found": (404, "Ressource introuvable."),
    "conflict": (409, "L'opération est en conflit avec l'état actuel."),
    "too_many_requests": (429, "Trop de tentatives, réessayez plus tard."),
    "rate_limited": (429, "Trop de requêtes, réessayez dans quelques instants."),
    "request.malformed": (400, "La requête est mal formée."),
    "request.unsupported_media_type": (
        415,
        "Le corps de la requête doit être envoyé en JSON (Content-Type: application/json).",
    ),
    "request.too_large": (413, "La requête dépasse la taille maximale autorisée."),
    "http.not_found": (404, "Ressource introuvable."),
    "http.method_not_allowed": (405, "Méthode non autorisée pour cette ressource."),
    "service.unavailable": (503, "Le service est momentanément indisponible."),
    "service.timeout": (504, "Le service n'a pas répondu à temps."),
    "service.outcome_unknown": (
        503,
        "La liaison avec le service a été perdue après l'envoi de votre demande : elle a "
        "peut-être été prise en compte. Vérifiez avant de la refaire, ou renvoyez-la avec la "
        "même clé Idempotency-Key, sans risque de doublon.",
    ),
    "broker.unavailable": (503, "La messagerie interne est momentanément indisponible."),
    "internal": (500, "Une erreur interne est survenue."),
}
# The 504 of a request that changes something (POST, PUT, PATCH, DELETE).
TIMEOUT_OUTCOME_UNKNOWN = (
    "Le service n'a pas répondu à temps : votre demande a peut-être été prise en compte. "
    "Vérifiez avant de la refaire, ou renvoyez-la avec la même clé Idempotency-Key, sans "
    "risque de doublon."
)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MALFORMED_JSON = "Le corps de la requête n'est pas un JSON valide."
NOT_AN_OBJECT = "Le corps de la requête doit être un objet JSON."
NUL_CHARACTER = "La requête contient un caractère nul (U+0000), qui n'est accepté nulle part."

# werkzeug exceptions we name ourselves; others get "http.<status>"
_HTTP_CODES = {
    400: "request.malformed",
    404: "http.not_found",
    405: "http.method_not_allowed",
    413: "request.too_large",
    415: "request.unsupported_media_type",
}
_GENERIC_4XX = "La requête n'a pas pu être traitée."

# Failures of the link to the broker (the RPC module also wraps them in
# BrokerUnavailable; raw ones may still escape from other AMQP code).
BROKER_ERRORS: tuple[type[BaseException], ...] = (
    BrokerUnavailable,
    amqp.exceptions.ConnectionError,
    kombu.exceptions.OperationalError,
    kombu.exceptions.ConnectionError,
)


@dataclass(frozen=True)
class Problem:
    status: int
    code: str
    title: str
    detail: str | None = None
    errors: dict[str, list[str]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def type(self) -> str:
        # plain HTTP errors carry no more meaning than their status
        if self.code.startswith("http.") or self.code == "internal":
            return "about:blank"
        return f"urn:problem:{self.code}"

    def body(self, request_id: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "code": self.code,
        }
        if self.detail:
            body["detail"] = self.detail
        if self.errors:
            body["errors"] = self.errors
        if self.extra:
            body["details"] = self.extra
        body["request_id"] = request_id
        return body


def _catalogued(code: str, retry_after: int | None = None) -> Problem:
    status, title = CATALOGUE[code]
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    return Problem(status, code, title, headers=headers)


def _changes_something() -> bool:
    """Whether the current request may have changed something (not a read)."""
    try:
        return request.method not in SAFE_METHODS
    except RuntimeError:  # outside a request (a thread of the readiness check)
        return False


def _timeout() -> Problem:
    problem = _catalogued("service.timeout", RETRY_AFTER_SERVICE)
    if not _changes_something():
        return problem
    return dataclasses.replace(problem, title=TIMEOUT_OUTCOME_UNKNOWN, extra={"outcome": "unknown"})


def _outcome_unknown() -> Problem:
    problem = _catalogued("service.outcome_unknown", RETRY_AFTER_SERVICE)
    return dataclasses.replace(problem, extra={"outcome": "unknown"})


def _from_service_error(exc: ServiceError) -> Problem:
    details = dict(exc.details or {})
    fields = details.pop("fields", None)
    detail = details.pop("detail", None)
    headers = {}
    retry_after = details.get("retry_after")
    if retry_after is not None:
        try:
            headers["Retry-After"] = str(max(1, int(-(-float(retry_after) // 1))))
        except (TypeError, ValueError):
            log.warning("ignoring malformed retry_after %r on %s", retry_after, exc.code)
    if int(exc.status) == 401 and exc.code.startswith("partner."):
        # RFC 9110 §15.5.2: say how to authenticate (the partner endpoints' key)
        headers["WWW-Authenticate"] = 'Bearer realm="partner"'
    return Problem(
        status=int(exc.status),
        code=exc.code,
        title=exc.message,
        detail=detail if isinstance(detail, str) else None,
        errors=fields if isinstance(fields, dict) else None,
        extra=details,
        headers=headers,
    )


def _from_http_exception(exc: HTTPException) -> Problem:
    status = exc.code or 500
    code = _HTTP_CODES.get(status) or f"http.{status}"
    title = CATALOGUE[code][1] if code in CATALOGUE else _GENERIC_4XX
    headers = {}
    if status == 405:
        allow = dict(exc.get_headers()).get("Allow")
        if allow:
            headers["Allow"] = allow
    if status >= 500:
        code = "internal" if status == 500 else f"http.{status}"
        return Problem(status, code, CATALOGUE["internal"][1])
    return Problem(status, code, title, headers=headers)


def _internal(exc: BaseException) -> Problem:
    log.error("unhandled error (request %s)", _request_id_or_none(), exc_info=exc)
    return _catalogued("internal")


def _from_remote_error(exc: RemoteError) -> Problem:
    """A service failed while calling another one: a service behind it that is
    down or too slow is still a 503/504 for the client, anything else a 500."""
    if exc.exc_type == "UnknownService":
        return _catalogued("service.unavailable", RETRY_AFTER_SERVICE)
    if exc.exc_type == "RpcTimeout":
        return _catalogued("service.timeout", RETRY_AFTER_SERVICE)
    return _internal(exc)


# The table: first matching row wins; order matters (specific before general).
TABLE: list[tuple[tuple[type[BaseException], ...], Any]] = [
    ((ServiceError,), _from_service_error),
    ((UnknownService,), lambda exc: _catalogued("service.unavailable", RETRY_AFTER_SERVICE)),
    ((RpcTimeout,), lambda exc: _timeout()),
    ((RemoteError,), lambda exc: _from_remote_error(exc)),
    ((OutcomeUnknown,), lambda exc: _outcome_unknown()),
    (BROKER_ERRORS, lambda exc: _catalogued("broker.unavailable", RETRY_AFTER_BROKER)),
    ((HTTPException,), _from_http_exception),
]


def problem_for(exc: BaseException) -> Problem:
    """Map any exception to the problem the client sees."""
    for classes, build in TABLE:
        if isinstance(exc, classes):
            return build(exc)
    return _internal(exc)


def problem_response(problem: Problem) -> Response:
    body = json.dumps(problem.body(_request_id_or_none()), ensure_ascii=False)
    response = Response(body, status=problem.status, mimetype=PROBLEM_JSON)
    for name, value in problem.headers.items():
        response.headers[name] = value
    return response


def abort_problem(status: int, code: str, message: str, details: dict | None = None) -> None:
    """Stop the current view with a problem answer (e.g. a check in a view)."""
    raise GatewayError(status, code, message, details)


def _wants_html() -> bool:
    """Browsers on web pages get a page; the API and health always get problems."""
    if request.path.startswith(("/api/", "/health")):
        return False
    best = request.accept_mimetypes.best_match(["application/json", PROBLEM_JSON, "text/html"])
    return best == "text/html"


def _html_response(problem: Problem) -> Response:
    rid = _request_id_or_none() or ""
    page = (
        '<!doctype html><html lang="fr"><meta charset="utf-8">'
        f"<title>{escape(problem.title)}</title>"
        f"<h1>{escape(problem.title)}</h1>"
        f"<p>Code : {escape(problem.code)} — référence : {escape(rid)}</p></html>"
    )
    response = Response(page, status=problem.status, mimetype="text/html")
    for name, value in problem.headers.items():
        response.headers[name] = value
    return response


def handle_exception(exc: Exception) -> Response | HTTPException:
    # redirects (e.g. a missing trailing slash) are not errors
    if isinstance(exc, HTTPException) and exc.code is not None and exc.code < 400:
        return exc
    if isinstance(exc, HTTPException) and exc.response is not None:
        return exc.response
    problem = problem_for(exc)
    if _wants_html():
        return _html_response(problem)
    return problem_response(problem)


# --- JSON bodies -------------------------------------------------------------


def _reject_constant(name: str) -> None:
    raise ValueError(f"non-standard JSON constant {name}")


def json_body(required: bool = True) -> dict[str, Any]:
    """The request's JSON object, checked: 415 unless JSON, 413 above
    ``MAX_JSON_BYTES``, 400 ``request.malformed`` unless a valid object.

    With ``required=False`` an empty body gives ``{}``.
    """
    limit = current_app.config["MAX_JSON_BYTES"]
    length = request.content_length
    if not required and not length and not request.headers.get("Transfer-Encoding"):
        return {}
    if not request.is_json:
        raise GatewayError(
            415,
            "request.unsupported_media_type",
            CATALOGUE["request.unsupported_media_type"][1],
        )
    if length is not None and length > limit:
        raise GatewayError(413, "request.too_large", CATALOGUE["request.too_large"][1])
    # Bounds bodies of unknown length (chunked) too: werkzeug then reads at
    # most this much, so one byte more than the limit means "too large".
    request.max_content_length = limit + 1
    data = request.get_data(cache=True)
    if len(data) > limit:
        raise GatewayError(413, "request.too_large", CATALOGUE["request.too_large"][1])
    if not data.strip():
        if not required:
            return {}
        raise GatewayError(400, "request.malformed", MALFORMED_JSON)
    try:
        value = json.loads(data, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise GatewayError(400, "request.malformed", MALFORMED_JSON) from None
    if not isinstance(value, dict):
        raise GatewayError(400, "request.malformed", NOT_AN_OBJECT)
    if _has_nul(value):
        raise GatewayError(400, "request.malformed", NUL_CHARACTER)
    return value


def _has_nul(value: Any, depth: int = 0) -> bool:
    """No text of ours may hold U+0000 (PostgreSQL refuses it in text columns)."""
    if isinstance(value, str):
        return "\x00" in value
    if depth > 64:
        return False
    if isinstance(value, dict):
        return any(_has_nul(k, depth + 1) or _has_nul(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v, depth + 1) for v in value)
    return False


def _refuse_nul_characters() -> None:
    """Paths, query strings and form fields with a NUL character are malformed
    requests, refused before any service sees them (JSON bodies: json_body)."""
    if (
        "\x00" in request.path
        or "\x00" in request.query_string.decode("latin-1")
        or any("\x00" in v for v in request.args.values())
    ):
        raise GatewayError(400, "request.malformed", NUL_CHARACTER)
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        if any("\x00" in k or "\x00" in v for k, v in request.form.items(multi=True)):
            raise GatewayError(400, "request.malformed", NUL_CHARACTER)


# --- request id ----------------------------------------------------------------


def _request_id_or_none() -> str | None:
    try:
        return g.get("request_id")
    except RuntimeError:  # outside an application context
        return None


def current_request_id() -> str:
    """The id of the current request (from ``X-Request-Id`` when sane)."""
    rid = g.get("request_id")
    if rid is None:
        rid = g.request_id = _incoming_or_new_request_id()
    return rid


def _incoming_or_new_request_id() -> str:
    incoming = request.headers.get(REQUEST_ID_HEADER, "") if request else ""
    if _SANE_REQUEST_ID.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


def _assign_request_id() -> None:
    current_request_id()


def _echo_request_id(response: Response) -> Response:
    rid = _request_id_or_none()
    if rid:
        response.headers[REQUEST_ID_HEADER] = rid
    return response


def init_app(app: Flask) -> None:
    app.register_error_handler(Exception, handle_exception)
    app.before_request(_assign_request_id)
    app.before_request(_refuse_nul_characters)
    app.after_request(_echo_request_id)
