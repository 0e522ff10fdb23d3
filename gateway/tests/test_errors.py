"""The error table: every failure becomes the documented problem+json answer."""

from __future__ import annotations

import logging

import kombu.exceptions
import pytest
from flask import Blueprint
from nameko.exceptions import RemoteError, RpcTimeout, UnknownService

from gateway.errors import (
    CATALOGUE,
    PROBLEM_JSON,
    BrokerUnavailable,
    GatewayError,
    abort_problem,
    problem_for,
)
from kit.errors import (
    ERROR_CLASSES,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    TooManyRequests,
    Unauthenticated,
)

SECRET = "password=hunter2 at /srv/internal/db.py line 42"


@pytest.fixture
def raising_client(make_app):
    """An app whose view raises the exception registered under a name."""
    app = make_app()
    raised: dict[str, BaseException] = {}
    bp = Blueprint("raising", __name__)

    @bp.route("/api/v1/_raise/<name>", methods=["GET", "POST"])
    def raise_it(name):
        raise raised[name]

    app.register_blueprint(bp)
    client = app.test_client()
    client.raised = raised
    return client


def get_raising(client, exc, path="/api/v1/_raise/x", **kwargs):
    client.raised["x"] = exc
    return client.get(path, **kwargs)


@pytest.mark.parametrize("cls", ERROR_CLASSES)
def test_each_typed_service_error_keeps_its_status_code_and_message(raising_client, cls):
    response = get_raising(raising_client, cls())

    assert response.status_code == cls.status
    assert response.mimetype == PROBLEM_JSON
    body = response.get_json()
    assert body["status"] == cls.status
    assert body["code"] == cls.default_code
    assert body["title"] == cls.default_message
    assert body["type"] == f"urn:problem:{cls.default_code}"
    assert body["request_id"] == response.headers["X-Request-Id"]


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (InvalidInput("invalid_input.siret", "SIRET invalide."), 422, "invalid_input.siret"),
        (NotFound("not_found.user", "Utilisateur introuvable."), 404, "not_found.user"),
        (Conflict("conflict.email_taken", "Adresse déjà utilisée."), 409, "conflict.email_taken"),
        (Forbidden("forbidden.agency_only", "Réservé."), 403, "forbidden.agency_only"),
        (
            Unauthenticated("unauthenticated.expired", "Session expirée."),
            401,
            "unauthenticated.expired",
        ),
        (GatewayError(418, "teapot", "Je suis une théière."), 418, "teapot"),
    ],
)
def test_specific_codes_and_messages_are_kept(raising_client, exc, status, code):
    body = get_raising(raising_client, exc).get_json()

    assert (body["status"], body["code"], body["title"]) == (status, code, exc.message)


def test_field_errors_are_listed_per_field(raising_client):
    exc = InvalidInput.fields({"siret": ["SIRET invalide."], "uai": ["UAI invalide.", "Requis."]})

    body = get_raising(raising_client, exc).get_json()

    assert body["errors"] == {"siret": ["SIRET invalide."], "uai": ["UAI invalide.", "Requis."]}
    assert "details" not in body


def test_detail_and_other_details_are_passed_on(raising_client):
    exc = Conflict("conflict.quota", "Quota atteint.", {"detail": "5 comptes au plus.", "max": 5})

    body = get_raising(raising_client, exc).get_json()

    assert body["detail"] == "5 comptes au plus."
    assert body["details"] == {"max": 5}


def test_too_many_requests_gives_retry_after_from_its_details(raising_client):
    exc = TooManyRequests(details={"retry_after": 41.2})

    response = get_raising(raising_client, exc)

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "42"
    assert response.get_json()["code"] == "too_many_requests"


def test_service_errors_without_retry_after_have_no_retry_after_header(raising_client):
    assert "Retry-After" not in get_raising(raising_client, TooManyRequests()).headers
    assert "Retry-After" not in get_raising(raising_client, NotFound()).headers


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (UnknownService("survey"), 503, "service.unavailable"),
        (RpcTimeout(5.0), 504, "service.timeout"),
        # a service behind the one called is down or too slow
        (RemoteError("UnknownService", "survey"), 503, "service.unavailable"),
        (RemoteError("RpcTimeout", "survey"), 504, "service.timeout"),
        (BrokerUnavailable("refused"), 503, "broker.unavailable"),
        (kombu.exceptions.OperationalError("[Errno 111] refused"), 503, "broker.unavailable"),
    ],
)
def test_bus_failures_are_503_or_504_with_retry_after(raising_client, exc, status, code):
    response = get_raising(raising_client, exc)

    assert response.status_code == status
    assert response.mimetype == PROBLEM_JSON
    assert int(response.headers["Retry-After"]) >= 1
    body = response.get_json()
    assert body["code"] == code
    assert body["title"] == CATALOGUE[code][1]
    assert "survey" not in response.get_data(as_text=True)  # no internal names


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError(SECRET),
        KeyError(SECRET),
        RemoteError("ValueError", SECRET),  # an untyped error inside a service
        OSError(SECRET),  # not from the RPC layer: a bug, not a broker outage
    ],
)
def test_anything_else_is_a_logged_500_that_leaks_nothing(raising_client, exc, caplog):
    with caplog.at_level(logging.ERROR, logger="gateway.errors"):
        response = get_raising(raising_client, exc)

    assert response.status_code == 500
    assert response.mimetype == PROBLEM_JSON
    body = response.get_json()
    assert body == {
        "type": "about:blank",
        "title": "Une erreur interne est survenue.",
        "status": 500,
        "code": "internal",
        "request_id": response.headers["X-Request-Id"],
    }
    assert "hunter2" not in response.get_data(as_text=True)
    assert any("hunter2" in (r.exc_text or "") or r.exc_info for r in caplog.records)


def test_unknown_api_route_is_a_problem(client):
    response = client.get("/api/v1/does-not-exist")

    assert response.status_code == 404
    assert response.mimetype == PROBLEM_JSON
    body = response.get_json()
    assert (body["code"], body["title"], body["type"]) == (
        "http.not_found",
        "Ressource introuvable.",
        "about:blank",
    )


def test_unknown_api_route_is_a_problem_even_for_browsers(client):
    response = client.get("/api/v1/does-not-exist", headers={"Accept": "text/html"})

    assert response.mimetype == PROBLEM_JSON


def test_unknown_page_asked_by_a_browser_is_an_html_page(client):
    response = client.get("/nulle-part", headers={"Accept": "text/html,*/*;q=0.8"})

    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "Ressource introuvable." in response.get_data(as_text=True)


def test_wrong_method_is_a_405_problem_with_allow(client):
    response = client.post("/health/live")

    assert response.status_code == 405
    assert response.mimetype == PROBLEM_JSON
    assert response.get_json()["code"] == "http.method_not_allowed"
    assert "GET" in response.headers["Allow"]


def test_body_above_max_content_length_is_a_413_problem(make_app):
    app = make_app(MAX_CONTENT_LENGTH=1024, MAX_JSON_BYTES=512)

    @app.post("/api/v1/_upload")
    def upload():
        from flask import request

        return {"size": len(request.get_data())}

    response = app.test_client().post("/api/v1/_upload", data=b"x" * 2048)

    assert response.status_code == 413
    body = response.get_json()
    assert (body["code"], body["title"]) == (
        "request.too_large",
        "La requête dépasse la taille maximale autorisée.",
    )


def test_problem_for_maps_werkzeug_400_and_415():
    from werkzeug.exceptions import BadRequest, UnsupportedMediaType

    assert problem_for(BadRequest()).code == "request.malformed"
    assert problem_for(UnsupportedMediaType()).code == "request.unsupported_media_type"
    assert problem_for(UnsupportedMediaType()).status == 415


def test_abort_problem_stops_a_view_with_that_problem(raising_client):
    with pytest.raises(GatewayError) as info:
        abort_problem(409, "conflict.closed", "La campagne est close.")
    body = get_raising(raising_client, info.value).get_json()

    assert (body["status"], body["code"]) == (409, "conflict.closed")


def test_request_id_is_echoed_when_sane(client):
    response = client.get("/health/live", headers={"X-Request-Id": "lb-7f3a.42:1"})

    assert response.headers["X-Request-Id"] == "lb-7f3a.42:1"


@pytest.mark.parametrize("bad", ["", "a b", "x" * 200, "<script>", "é"])
def test_request_id_is_generated_when_absent_or_insane(client, bad):
    response = client.get("/health/live", headers={"X-Request-Id": bad} if bad else {})

    rid = response.headers["X-Request-Id"]
    assert rid != bad and len(rid) == 32 and rid.isalnum()


def test_each_request_gets_its_own_id(client):
    ids = {client.get("/health/live").headers["X-Request-Id"] for _ in range(3)}

    assert len(ids) == 3


def test_problems_carry_the_request_id(client):
    response = client.get("/api/v1/nope", headers={"X-Request-Id": "abc123"})

    assert response.get_json()["request_id"] == "abc123"
    assert response.headers["X-Request-Id"] == "abc123"


def test_redirects_are_not_turned_into_problems(make_app):
    app = make_app()

    @app.get("/api/v1/_folder/")
    def folder():
        return {"ok": True}

    response = app.test_client().get("/api/v1/_folder")

    assert response.status_code == 308
    assert response.headers["Location"].endswith("/api/v1/_folder/")


def test_an_error_on_a_web_page_asked_by_a_browser_is_an_html_page_without_internals(
    raising_client,
):
    raising_client.raised["x"] = RuntimeError(SECRET)
    app = raising_client.application

    @app.get("/page/_raise")
    def page():
        raise raising_client.raised["x"]

    response = raising_client.get("/page/_raise", headers={"Accept": "text/html"})

    assert response.status_code == 500
    assert response.mimetype == "text/html"
    assert "hunter2" not in response.get_data(as_text=True)
    assert "Une erreur interne est survenue." in response.get_data(as_text=True)


# --- « état inconnu » (calls that expire) ------------------------------------------


def test_a_lost_link_after_sending_is_a_503_outcome_unknown(app):
    from gateway.amqp_rpc import OutcomeUnknown
    from gateway.errors import problem_for

    with app.test_request_context("/api/v1/x", method="POST"):
        problem = problem_for(OutcomeUnknown("cut"))
    assert (problem.status, problem.code) == (503, "service.outcome_unknown")
    assert problem.extra == {"outcome": "unknown"}
    assert "Idempotency-Key" in problem.title and "peut-être" in problem.title
    assert problem.headers["Retry-After"]


def test_a_timeout_is_outcome_unknown_for_a_write_and_plain_for_a_read(app):
    from nameko.exceptions import RpcTimeout

    from gateway.errors import problem_for

    with app.test_request_context("/api/v1/x", method="POST"):
        write = problem_for(RpcTimeout(5))
    with app.test_request_context("/api/v1/x", method="GET"):
        read = problem_for(RpcTimeout(5))
    assert (write.status, write.code) == (504, "service.timeout")
    assert write.extra == {"outcome": "unknown"}
    assert "Idempotency-Key" in write.title
    assert (read.status, read.code, read.extra) == (504, "service.timeout", {})
    assert read.title == "Le service n'a pas répondu à temps."


def test_no_consumer_is_a_503_service_unavailable(app):
    from gateway.amqp_rpc import NoConsumer
    from gateway.errors import problem_for

    with app.test_request_context("/api/v1/x"):
        problem = problem_for(NoConsumer("survey"))
    assert (problem.status, problem.code) == (503, "service.unavailable")
    assert problem.headers["Retry-After"] == "5"
