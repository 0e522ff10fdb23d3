"""Uploads: what may be stored, and how, before any byte reaches files."""

from __future__ import annotations

import base64

from kit.context import Caller
from kit.db import utcnow
from survey import repository as repo
from survey import xlsx
from survey.domain import attachments as attachment_rules
from survey.domain import campaigns as rules
from survey.errors import CATALOGUE as ERRORS
from survey.use_cases._common import Clock, _editable, _require_xlsx_name, _submittable


def _upload_info(info) -> tuple[str, int, bytes]:
    if not isinstance(info, dict):
        info = {}
    name = info.get("name") if isinstance(info.get("name"), str) else ""
    size = info.get("size") if isinstance(info.get("size"), int) else -1
    try:
        head = base64.b64decode(info.get("head_b64") or "", validate=True)[:64]
    except (ValueError, TypeError):
        head = b""
    return name.strip(), size, head


def prepare_upload(
    session, caller: Caller, survey_id, purpose: str, info: dict, now: Clock = utcnow
) -> dict:
    """Checks, before any byte is stored, that the caller may upload this
    file here; says how files must store it: ``{store: store_xlsx |
    store_file, meta: {kind, name, content_type, owner_org_id}}``.

    ``purpose``: ``certifications`` (the list to import), ``response`` (the
    filled form: managers only, while transmission is open), ``attachment``;
    ``info``: ``{name, size, head_b64}`` (the first bytes)."""
    at = now()
    today = rules.today_in_france(at)
    name, size, head = _upload_info(info)
    if purpose == "certifications":
        survey, _campaign = _editable(session, caller, survey_id, today)
        _require_xlsx_name(name)
        kind, store, content_type = "certification_list", "store_xlsx", xlsx.XLSX_CONTENT_TYPE
    elif purpose == "response":
        survey, campaign = _submittable(session, caller, survey_id, today)
        _require_xlsx_name(name)
        org = repo.organisation(session, survey.org_id)
        name = rules.transmission_file_name(campaign.name, org.name if org else "organisme", at)
        kind, store, content_type = "survey_form", "store_xlsx", xlsx.XLSX_CONTENT_TYPE
    elif purpose == "attachment":
        survey, _campaign = _editable(session, caller, survey_id, today)
        try:
            ext, content_type = attachment_rules.check(name, size, head)
        except attachment_rules.Refused as exc:
            raise ERRORS.error(exc.code, fields={"file": [exc.message]}, **exc.params) from None
        if len(repo.attachments(session, survey.id)) >= attachment_rules.MAX_PER_SURVEY and not (
            isinstance(info, dict) and info.get("replacing")
        ):
            raise ERRORS.error(
                "survey.attachments_full", max_attachments=attachment_rules.MAX_PER_SURVEY
            )
        kind, store = "attachment", ("store_xlsx" if ext == "xlsx" else "store_file")
    else:
        raise ERRORS.error(
            "survey.invalid_input", fields={"purpose": ["certifications, response ou attachment."]}
        )
    return {
        "store": store,
        "meta": {
            "kind": kind,
            "name": name,
            "content_type": content_type,
            "owner_org_id": survey.org_id,
        },
    }
