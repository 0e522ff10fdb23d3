"""``json_body()``: views get a checked JSON object or the client a clear 4xx."""

from __future__ import annotations

import json

import pytest
from werkzeug.test import EnvironBuilder, run_wsgi_app

from gateway.errors import PROBLEM_JSON, json_body


@pytest.fixture
def json_client(make_app):
    app = make_app(MAX_JSON_BYTES=100)

    @app.post("/api/v1/_echo")
    def echo():
        return {"got": json_body()}

    @app.post("/api/v1/_optional")
    def optional():
        return {"got": json_body(required=False)}

    return app.test_client()


def assert_problem(response, status, code):
    assert response.status_code == status
    assert response.mimetype == PROBLEM_JSON
    assert response.get_json()["code"] == code
    return response.get_json()


def test_a_json_object_is_returned(json_client):
    response = json_client.post("/api/v1/_echo", json={"siret": "41816609600051"})

    assert response.status_code == 200
    assert response.get_json() == {"got": {"siret": "41816609600051"}}


def test_json_with_charset_is_accepted(json_client):
    response = json_client.post(
        "/api/v1/_echo",
        data='{"nom": "Élise"}'.encode(),
        content_type="application/json; charset=utf-8",
    )

    assert response.get_json() == {"got": {"nom": "Élise"}}


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_other_content_types_are_415(json_client, content_type):
    kwargs = {"content_type": content_type} if content_type else {}
    response = json_client.post("/api/v1/_echo", data='{"a": 1}', **kwargs)

    assert_problem(response, 415, "request.unsupported_media_type")


def test_a_body_above_max_json_bytes_is_413(json_client):
    response = json_client.post("/api/v1/_echo", json={"a": "x" * 200})

    assert_problem(response, 413, "request.too_large")


def test_a_chunked_body_above_max_json_bytes_is_413(json_client):
    # the test client drops streams of unknown length: call the WSGI app itself
    builder = EnvironBuilder(
        path="/api/v1/_echo",
        method="POST",
        data=b'{"a": "' + b"x" * 500 + b'"}',
        content_type="application/json",
    )
    environ = builder.get_environ()
    del environ["CONTENT_LENGTH"]  # no length announced, as with chunked uploads
    environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    environ["wsgi.input_terminated"] = True

    app_iter, status, headers = run_wsgi_app(json_client.application, environ)
    body = json.loads(b"".join(app_iter))

    assert status.startswith("413")
    assert headers["Content-Type"] == PROBLEM_JSON
    assert body["code"] == "request.too_large"


@pytest.mark.parametrize(
    ("raw", "title"),
    [
        ("{not json", "Le corps de la requête n'est pas un JSON valide."),
        ('{"a": NaN}', "Le corps de la requête n'est pas un JSON valide."),
        ("", "Le corps de la requête n'est pas un JSON valide."),
        ("[" * 40 + "]" * 40, "Le corps de la requête doit être un objet JSON."),
        ('["a", "b"]', "Le corps de la requête doit être un objet JSON."),
        ('"text"', "Le corps de la requête doit être un objet JSON."),
        (b"\xff\xfe{", "Le corps de la requête n'est pas un JSON valide."),
    ],
)
def test_malformed_or_non_object_json_is_400(json_client, raw, title):
    response = json_client.post("/api/v1/_echo", data=raw, content_type="application/json")

    body = assert_problem(response, 400, "request.malformed")
    assert body["title"] == title


def test_deeply_nested_json_is_400_not_500(make_app):
    app = make_app(MAX_JSON_BYTES=64 * 1024)

    @app.post("/api/v1/_echo")
    def echo():
        return {"got": json_body()}

    raw = '{"a": ' + "[" * 30000 + "]" * 30000 + "}"
    response = app.test_client().post("/api/v1/_echo", data=raw, content_type="application/json")

    assert_problem(response, 400, "request.malformed")


def test_an_optional_empty_body_is_an_empty_object(json_client):
    assert json_client.post("/api/v1/_optional").get_json() == {"got": {}}


def test_an_optional_body_that_is_present_is_still_checked(json_client):
    response = json_client.post("/api/v1/_optional", data="nope", content_type="text/plain")

    assert_problem(response, 415, "request.unsupported_media_type")


def test_nul_characters_are_refused_everywhere(client):
    """PostgreSQL refuses U+0000 in text: a clean 400 instead of a 500 deep down."""
    for response in (
        client.get("/api/v1/files/%00"),
        client.get("/api/v1/organisations?q=a%00b"),
        client.post("/api/v1/sessions", json={"email": "a\x00@example.org", "password": "x"}),
        client.post("/connexion", data={"email": "a\x00b", "password": "x"}),
    ):
        assert response.status_code == 400, response.get_data(as_text=True)
        assert response.get_json()["code"] == "request.malformed"
