"""Serves the API description (``openapi.yaml``) as JSON and YAML.

The document is written by hand next to the code it describes and a test
checks that every ``/api/v1`` and ``/health`` route appears in it. It is read
once per app on first use (not at import) and its ``servers`` entry is set to
``PUBLIC_URL``.
"""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

import yaml
from flask import Blueprint, Flask, Response, current_app

bp = Blueprint("openapi", __name__, url_prefix="/api/v1")

EXTENSION = "gateway.openapi"


def load_document() -> dict[str, Any]:
    """The document as written in ``openapi.yaml``."""
    text = resources.files("gateway").joinpath("openapi.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def document(app: Flask) -> dict[str, Any]:
    """The document as served by ``app`` (cached per app)."""
    cached = app.extensions.get(EXTENSION)
    if cached is None:
        cached = copy.deepcopy(load_document())
        cached["servers"] = [
            {"url": app.config["PUBLIC_URL"], "description": "Cette passerelle / this gateway"}
        ]
        app.extensions[EXTENSION] = cached
    return cached


@bp.get("/openapi.json")
def openapi_json() -> Response:
    """The OpenAPI 3.0.3 document as JSON."""
    body = json.dumps(document(current_app._get_current_object()), ensure_ascii=False)
    return Response(body, mimetype="application/json")


@bp.get("/openapi.yaml")
def openapi_yaml() -> Response:
    """The OpenAPI 3.0.3 document as YAML."""
    body = yaml.safe_dump(
        document(current_app._get_current_object()), allow_unicode=True, sort_keys=False
    )
    return Response(body, mimetype="application/yaml")
