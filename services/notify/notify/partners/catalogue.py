"""The events partners may receive: short name → nameko event, CloudEvents
type, French description, and how its envelope is built from the payload.

Payloads go out minimal (DESIGN §8): ids, public facts and links; never a
person (``submitted_by``, ``filed_by``, ``by`` stay inside the platform).
Fields may be added, never renamed or removed; a change of meaning is a new
``.v2`` type.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass

from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from kit import events
from kit.partner_scope import CARTE, ORGANISATIONS

TYPE_PREFIX = "fr.formation"
# the scope dimension of each event (kit.partner_scope)
SURVEY_KINDS = ORGANISATIONS
CARTE_KIND = CARTE


@dataclass(frozen=True)
class EventType:
    name: str  # short name: "<service>.<event>"
    service: str
    event: str
    description_fr: str
    kind: str  # SURVEY_KINDS | CARTE_KIND
    subject: Callable[[dict], str]
    data: Callable[[dict, str], dict]  # (payload, public_url) -> data

    @property
    def type(self) -> str:
        return f"{TYPE_PREFIX}.{self.service}.{self.event}.v1"

    @property
    def source(self) -> str:
        return f"/formation/{self.service}"


def _pick(payload: dict, *names: str) -> dict:
    return {name: payload.get(name) for name in names}


def _submitted(p: dict, base: str) -> dict:
    tid = p.get("transmission_id")
    data = _pick(
        p,
        "transmission_id",
        "survey_id",
        "campaign_id",
        "campaign_name",
        "siret",
        "uai",
        "account_type",
        "seq",
        "form_version",
        "sha256",
        "size",
        "file_name",
        "submitted_at",
    )
    data["links"] = {
        "transmission": f"{base}/api/v1/partner/transmissions/{tid}",
        "file": f"{base}/api/v1/partner/transmissions/{tid}/file",
    }
    return data


def _blocking(p: dict, _base: str) -> dict:
    names = ("survey_id", "campaign_id", "campaign_name", "siret", "uai", "account_type", "at")
    return _pick(p, *names)


def _validated_org(p: dict, _base: str) -> dict:
    return _pick(
        p, "org_id", "siret", "uai", "nda", "account_type", "name", "parent_id", "validated_at"
    )


def _validated_request(p: dict, base: str) -> dict:
    data = _pick(
        p,
        "request_id",
        "campaign_id",
        "school_year",
        "concerned_uai",
        "referent_uai",
        "academy",
        "department",
        "measure",
        "modality",
        "diploma_code",
        "validated_at",
    )
    data["links"] = {"request": f"{base}/api/v1/partner/carte/requests/{p.get('request_id')}"}
    return data


CATALOGUE: dict[str, EventType] = {
    t.name: t
    for t in (
        EventType(
            "survey.response_submitted",
            events.SURVEY,
            events.RESPONSE_SUBMITTED,
            "Une organisation a déposé le questionnaire d'une enquête.",
            SURVEY_KINDS,
            lambda p: f"transmissions/{p.get('transmission_id')}",
            _submitted,
        ),
        EventType(
            "survey.survey_blocked",
            events.SURVEY,
            events.SURVEY_BLOCKED,
            "L'agence a bloqué l'enquête d'une organisation.",
            SURVEY_KINDS,
            lambda p: f"surveys/{p.get('survey_id')}",
            _blocking,
        ),
        EventType(
            "survey.survey_unblocked",
            events.SURVEY,
            events.SURVEY_UNBLOCKED,
            "L'agence a débloqué l'enquête d'une organisation.",
            SURVEY_KINDS,
            lambda p: f"surveys/{p.get('survey_id')}",
            _blocking,
        ),
        EventType(
            "identity.organisation_validated",
            events.IDENTITY,
            events.ORGANISATION_VALIDATED,
            "L'agence a validé l'inscription d'une organisation.",
            SURVEY_KINDS,
            lambda p: f"organisations/{p.get('siret')}",
            _validated_org,
        ),
        EventType(
            "carte.request_validated",
            events.CARTE,
            events.REQUEST_VALIDATED,
            "Un établissement a confirmé une demande d'ouverture ou de fermeture de formation.",
            CARTE_KIND,
            lambda p: f"carte/requests/{p.get('request_id')}",
            _validated_request,
        ),
    )
}


def by_event(service: str, event: str) -> EventType:
    return next(t for t in CATALOGUE.values() if (t.service, t.event) == (service, event))


def parse_time(value) -> dt.datetime:
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    return dt.datetime.now(dt.UTC)


def envelope(kind: EventType, payload: dict, public_url: str) -> dict:
    """The structured CloudEvent (a JSON object) of a payload, through the SDK."""
    event = CloudEvent(
        attributes={
            "specversion": "1.0",
            "id": payload["event_id"],
            "source": kind.source,
            "type": kind.type,
            "time": parse_time(payload.get("occurred_at")),
            "subject": kind.subject(payload),
            "datacontenttype": "application/json",
        },
        data=kind.data(payload, public_url.rstrip("/")),
    )
    return json.loads(JSONFormat().write(event))


def facts(kind: EventType, payload: dict) -> dict:
    """What a scope is matched on."""
    if kind.kind == CARTE_KIND:
        return {"academy": (payload.get("academy") or None)}
    return {"account_type": payload.get("account_type"), "siret": payload.get("siret")}
