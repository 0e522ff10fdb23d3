"""The OpenAPI document: served, well-formed, and covering every route."""

from __future__ import annotations

import re

import pytest
import yaml

from gateway import create_app
from gateway.errors import CATALOGUE
from gateway.openapi import load_document

DOCUMENTED_PREFIXES = ("/api/v1", "/health")
IGNORED_METHODS = {"HEAD", "OPTIONS"}


def openapi_path(rule: str) -> str:
    """Flask ``/users/<int:user_id>`` -> OpenAPI ``/users/{user_id}``."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def test_flask_rules_become_openapi_paths():
    assert openapi_path("/api/v1/users/<user_id>") == "/api/v1/users/{user_id}"
    assert openapi_path("/api/v1/o/<int:org>/u/<path:rest>") == "/api/v1/o/{org}/u/{rest}"


def test_every_route_is_documented_with_its_methods():
    app = create_app({"TESTING": True})
    document = load_document()
    missing = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(DOCUMENTED_PREFIXES):
            continue
        operations = document["paths"].get(openapi_path(rule.rule), {})
        for method in sorted(rule.methods - IGNORED_METHODS):
            if method.lower() not in operations:
                missing.append(f"{method} {rule.rule}")

    assert missing == [], f"routes missing from gateway/gateway/openapi.yaml: {missing}"


def test_every_documented_operation_exists():
    app = create_app({"TESTING": True})
    routes = {
        (openapi_path(rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        for method in rule.methods - IGNORED_METHODS
    }
    documented = {
        (path, method)
        for path, operations in load_document()["paths"].items()
        for method in operations
        if method in {"get", "post", "put", "patch", "delete"}
    }

    assert documented - routes == set()


def test_document_has_the_shared_parts():
    document = load_document()

    assert document["openapi"] == "3.0.3"
    components = document["components"]
    assert set(components["schemas"]["Problem"]["required"]) >= {"type", "title", "status", "code"}
    assert components["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert components["securitySchemes"]["cookieAuth"]["in"] == "cookie"


@pytest.mark.parametrize("code", sorted(CATALOGUE))
def test_every_error_code_is_in_the_catalogue_of_the_document(code):
    assert f"`{code}`" in load_document()["info"]["description"]


def test_every_operation_has_a_unique_operation_id_and_responses():
    ids = []
    for path, operations in load_document()["paths"].items():
        for method, operation in operations.items():
            assert operation.get("responses"), f"{method} {path} has no responses"
            ids.append(operation["operationId"])

    assert len(ids) == len(set(ids))


def test_local_references_resolve():
    document = load_document()
    text = yaml.safe_dump(document)
    for ref in set(re.findall(r"#/components/([A-Za-z]+)/([A-Za-z-]+)", text)):
        section, name = ref
        assert name in document["components"][section], ref


def test_served_as_json_and_yaml_with_this_public_url(make_app):
    client = make_app(PUBLIC_URL="https://formation.example.fr").test_client()

    as_json = client.get("/api/v1/openapi.json")
    as_yaml = client.get("/api/v1/openapi.yaml")

    assert as_json.status_code == as_yaml.status_code == 200
    assert as_json.mimetype == "application/json"
    assert as_yaml.mimetype == "application/yaml"
    assert yaml.safe_load(as_yaml.get_data(as_text=True)) == as_json.get_json()
    assert as_json.get_json()["servers"][0]["url"] == "https://formation.example.fr"
    assert as_json.get_json()["paths"].keys() == load_document()["paths"].keys()
