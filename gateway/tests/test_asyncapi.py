"""The AsyncAPI document of what the platform pushes to partners.

``gateway/gateway/asyncapi.yaml`` is written by hand, so these tests hold it
to the official AsyncAPI 3.0.0 JSON Schema (vendored under ``schemas/``, from
the npm package ``@asyncapi/specs``: no network) and to the partner contract
of docs/partners-design.md: the five event types, their CloudEvents ``type``
and the fields of their ``data``. Every example must be accepted by its own
message's payload schema, and the CloudEvent that notify actually builds must
be too.
"""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from importlib import resources
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

SCHEMA_PATH = Path(__file__).parent / "schemas" / "asyncapi-3.0.0.json"
DOCUMENT_URI = "urn:formation:asyncapi"

# docs/partners-design.md, « Event catalogue » and the fields of `data`
CONTRACT = {
    "survey.response_submitted": (
        "transmission_id survey_id campaign_id campaign_name siret uai account_type seq "
        "form_version sha256 size file_name submitted_at links"
    ),
    "survey.survey_blocked": "survey_id campaign_id campaign_name siret uai account_type at",
    "survey.survey_unblocked": "survey_id campaign_id campaign_name siret uai account_type at",
    "identity.organisation_validated": (
        "org_id siret uai nda account_type name parent_id validated_at"
    ),
    "carte.request_validated": (
        "request_id campaign_id school_year concerned_uai referent_uai academy department "
        "measure modality diploma_code validated_at links"
    ),
}
NEVER_SENT = {"submitted_by", "filed_by", "by", "email", "first_name", "last_name"}


def load_document() -> dict:
    text = resources.files("gateway").joinpath("asyncapi.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


@cache
def asyncapi_validator() -> Draft7Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return Draft7Validator(schema)


def resolve(document: dict, node):
    """Follows local ``$ref``s (``#/a/b``) until a non-reference node."""
    while isinstance(node, dict) and "$ref" in node:
        pointer = node["$ref"]
        assert pointer.startswith("#/"), pointer
        node = document
        for part in pointer[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def messages(document: dict) -> dict[str, dict]:
    """The component messages by their short name (``survey.response_submitted``)."""
    return {m["name"]: m for m in document["components"]["messages"].values()}


def payload_validator(document: dict, key: str) -> Draft7Validator:
    """Validates against ``components/messages/<key>/payload``, whose ``$ref``s
    point into the document itself."""
    registry = Registry().with_resource(
        DOCUMENT_URI, Resource.from_contents(document, default_specification=DRAFT7)
    )
    schema = {"$ref": f"{DOCUMENT_URI}#/components/messages/{key}/payload"}
    return Draft7Validator(schema, registry=registry, format_checker=Draft7Validator.FORMAT_CHECKER)


def errors_of(document: dict) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
        for e in asyncapi_validator().iter_errors(document)
    ]


def test_the_vendored_schema_is_the_official_asyncapi_3_0_0_schema_and_needs_no_network():
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))

    assert schema["$schema"] == "http://json-schema.org/draft-07/schema"
    assert schema["title"] == "AsyncAPI 3.0.0 schema."
    assert schema["properties"]["asyncapi"]["const"] == "3.0.0"
    external = {
        ref
        for ref in re.findall(r'"\$ref":\s*"([^"]*)"', SCHEMA_PATH.read_text(encoding="utf-8"))
        if not ref.startswith("#")
    }
    # the only non-local references left sit inside the schema's own examples
    assert all(not ref.startswith(("http:", "https:")) for ref in external), external


def test_the_document_is_valid_asyncapi_3():
    document = load_document()

    assert document["asyncapi"] == "3.0.0"
    assert errors_of(document) == []


@pytest.mark.parametrize(
    "break_it",
    [
        pytest.param(lambda d: d.pop("info"), id="no info"),
        pytest.param(
            lambda d: d["channels"]["webhook"]["messages"].update(responseSubmitted="oops"),
            id="a channel message that is not an object",
        ),
        pytest.param(
            lambda d: d["operations"]["sendSurveyBlockedWebhook"].update(action="publish"),
            id="an AsyncAPI 2 action",
        ),
        pytest.param(
            lambda d: d["channels"]["partnerQueue"]["bindings"]["amqp"].update(
                exchange={"name": "partner.events"}
            ),
            id="an AMQP binding that is both a queue and an exchange",
        ),
    ],
)
def test_the_validator_rejects_a_broken_document(break_it):
    document = copy.deepcopy(load_document())
    break_it(document)

    assert document["asyncapi"] == "3.0.0"
    assert errors_of(document) != []


def test_every_local_reference_points_at_something_in_the_document():
    document = load_document()
    text = json.dumps(document)
    refs = set(re.findall(r'"\$ref": "(#/[^"]+)"', text))

    assert refs
    for ref in sorted(refs):
        assert resolve(document, {"$ref": ref}) is not None, ref


def test_each_operation_sends_a_message_of_its_own_channel():
    document = load_document()

    for name, operation in document["operations"].items():
        assert operation["action"] == "send", name
        channel = operation["channel"]["$ref"]
        for message in operation["messages"]:
            assert message["$ref"].startswith(f"{channel}/messages/"), name


def test_the_five_event_types_are_documented_with_their_cloudevents_type():
    document = load_document()
    found = messages(document)

    assert set(found) == set(CONTRACT)
    for name, message in found.items():
        service, event = name.split(".")
        properties = resolve(document, message["payload"])["properties"]
        assert properties["type"]["const"] == f"fr.formation.{service}.{event}.v1"
        assert properties["source"]["const"] == f"/formation/{service}"
        assert properties["specversion"] == {"$ref": "#/components/schemas/SpecVersion"}
        assert message["summary"] and message["title"]


def test_both_channels_carry_every_event_and_each_has_a_send_operation():
    document = load_document()
    keys = set(document["components"]["messages"])

    for name in ("webhook", "partnerQueue"):
        channel = document["channels"][name]
        assert set(channel["messages"]) == keys, name
        sent = {
            op["messages"][0]["$ref"].rsplit("/", 1)[1]
            for op in document["operations"].values()
            if op["channel"]["$ref"] == f"#/channels/{name}"
        }
        assert sent == keys, name


def test_the_data_of_each_event_has_exactly_the_fields_of_the_contract():
    document = load_document()

    for name, message in messages(document).items():
        envelope = resolve(document, message["payload"])
        data = resolve(document, envelope["properties"]["data"])
        assert set(data["required"]) == set(CONTRACT[name].split()), name
        assert set(data["properties"]) == set(CONTRACT[name].split()), name
        assert data["additionalProperties"] is True, name
        assert not NEVER_SENT & set(data["properties"]), name


@pytest.mark.parametrize("key", sorted(load_document()["components"]["messages"]))
def test_each_example_is_accepted_by_its_own_payload_schema(key):
    document = load_document()
    message = document["components"]["messages"][key]
    validator = payload_validator(document, key)

    assert message["examples"]
    for example in message["examples"]:
        errors = [e.message for e in validator.iter_errors(example["payload"])]
        assert errors == [], example["name"]


def test_a_payload_schema_rejects_a_wrong_type_a_missing_field_and_a_bad_time():
    document = load_document()
    validator = payload_validator(document, "responseSubmitted")
    good = document["components"]["messages"]["responseSubmitted"]["examples"][0]["payload"]

    wrong_type = copy.deepcopy(good)
    wrong_type["type"] = "fr.formation.survey.survey_blocked.v1"
    missing = copy.deepcopy(good)
    del missing["data"]["sha256"]
    bad_time = copy.deepcopy(good)
    bad_time["time"] = 1773308467  # a Unix time, not RFC 3339
    with_null_uai = copy.deepcopy(good)
    with_null_uai["data"]["uai"] = None

    assert not validator.is_valid(wrong_type)
    assert not validator.is_valid(missing)
    assert not validator.is_valid(bad_time)
    assert validator.is_valid(with_null_uai)


def test_the_cloudevent_notify_builds_matches_the_document():
    catalogue = pytest.importorskip("notify.partners.catalogue")
    document = load_document()
    public_url = "https://plateforme-formations.fr"

    for key, message in document["components"]["messages"].items():
        example = message["examples"][0]["payload"]
        # the emitting service's payload: the example's facts plus what stays inside
        payload = {k: v for k, v in example["data"].items() if k != "links"}
        payload.update(event_id=example["id"], occurred_at=example["time"].replace("Z", "+00:00"))
        payload.setdefault("org_id", "5c4b3a2918f74e6d9c8b7a6f5e4d3c2b")
        payload.update(submitted_by="u1", filed_by="u2", by="u3", file_id="f1", variant_id=7)
        built = catalogue.envelope(catalogue.CATALOGUE[message["name"]], payload, public_url)

        assert [e.message for e in payload_validator(document, key).iter_errors(built)] == []
        documented = resolve(document, resolve(document, message["payload"])["properties"]["data"])
        assert set(built["data"]) == set(documented["properties"]), key
        assert built == example, key
