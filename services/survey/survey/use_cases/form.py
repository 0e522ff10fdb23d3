"""The form: the organisation's pre-formatted spreadsheet (official or
working copy) and its notice."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

from sqlalchemy.exc import IntegrityError

from kit import events
from kit.context import Caller
from kit.db import new_id, utcnow
from kit.outbox import emit
from survey import repository as repo
from survey import xlsx
from survey.domain import campaigns as rules
from survey.domain import form as form_rules
from survey.errors import CATALOGUE as ERRORS
from survey.models import Form, Outbox, Survey
from survey.notice import render_notice
from survey.schemas import cert_dict, missing_data
from survey.use_cases._common import (
    Clock,
    _org_row,
    _visible,
    b64,
    direct,
    french_list,
    require_member,
)


def _fetch_organisation(identity, caller: Caller, org_id: str) -> dict:
    if org_id == caller.org_id:
        return identity.get_me().get("organisation") or {}
    return identity.get_organisation(org_id)


def _layout_and_digest(snapshot: dict):
    layout = form_rules.build_layout(snapshot)
    return layout, form_rules.layout_digest(layout)


def sheet_password(secret: bytes, survey_id: str) -> str:
    """Sheets are protected with a per-survey password nobody needs to know."""
    return hmac.new(secret, f"sheet|{survey_id}".encode(), hashlib.sha256).hexdigest()[:16]


def _form_record(session, survey: Survey, snapshot: dict, digest: str, at: dt.datetime) -> Form:
    """The form version of this snapshot: the latest one if identical, else a new one."""
    snapshot_hash = hashlib.sha256(form_rules.canonical_json(snapshot).encode()).hexdigest()
    for _attempt in range(3):
        latest = repo.latest_form(session, survey.id)
        if latest is not None and latest.snapshot_hash == snapshot_hash:
            return latest
        record = Form(
            id=new_id(),
            survey_id=survey.id,
            version=(latest.version + 1) if latest else 1,
            snapshot=snapshot,
            snapshot_hash=snapshot_hash,
            data_hash=form_rules.snapshot_data_hash(snapshot),
            digest=digest,
            created_at=at,
        )
        try:
            with session.begin_nested():
                session.add(record)
            return record
        except IntegrityError:  # another download created this version first
            continue
    raise ERRORS.error("survey.busy")


def generate_form(
    session,
    caller: Caller,
    survey_id,
    purpose: str,
    identity,
    secret: bytes,
    cpu=direct,
    now: Clock = utcnow,
) -> dict:
    """The organisation's pre-formatted form (``official``: locked, signed,
    the only one accepted back) or its working copy (``working``: editable,
    never accepted). Refused until « Données à renseigner » are complete. The
    first download of the official form sets the status to « téléchargée »."""
    if purpose not in form_rules.PURPOSES:
        raise ERRORS.error("survey.invalid_input", fields={"purpose": ["official ou working."]})
    at = now()
    today = rules.today_in_france(at)
    survey, campaign = _visible(session, caller, survey_id, today)
    require_member(caller)
    certs = repo.certifications(session, survey.id)
    missing = missing_data(survey, certs)
    if missing:
        raise ERRORS.error(
            "survey.required_data_incomplete", missing_label=french_list(missing), missing=missing
        )
    lines = sum(c.establishments for c in certs)
    if lines > form_rules.MAX_LINES:
        raise ERRORS.error("survey.form_too_large", lines=lines, max_lines=form_rules.MAX_LINES)
    session.commit()
    org_data = _fetch_organisation(identity, caller, survey.org_id)
    if org_data.get("id") == survey.org_id:
        repo.upsert_organisations(session, [_org_row(org_data, at)])
    parent = repo.organisation(session, org_data.get("parent_id"))
    snapshot = {
        "survey_id": survey.id,
        "campaign": {
            "id": campaign.id,
            "name": campaign.name,
            "direction": campaign.direction,
            "return_due": rules.french_date(campaign.return_due_on),
            "closes": rules.french_date(campaign.closes_on),
        },
        "organisation": {
            "id": survey.org_id,
            "name": org_data.get("name") or "",
            "siret": org_data.get("siret") or "",
            "uai": org_data.get("uai") or "",
            "nda": org_data.get("nda") or "",
            "account_type": org_data.get("account_type") or "",
            "parent_name": parent.name if parent is not None and parent.name else "",
        },
        "establishments_count": survey.establishments_count,
        "trainings_count": survey.trainings_count,
        "certifications": [{k: v for k, v in cert_dict(c).items() if k != "id"} for c in certs],
    }
    layout, digest = cpu(_layout_and_digest, snapshot)
    official = purpose == form_rules.OFFICIAL
    version = _form_record(session, survey, snapshot, digest, at).version if official else 0
    meta = {
        "format": form_rules.FORMAT,
        "purpose": purpose,
        "survey_id": survey.id,
        "org_id": survey.org_id,
        "campaign_id": campaign.id,
        "form_version": version,
        "digest": digest,
    }
    content = cpu(
        xlsx.render_form,
        layout,
        form_rules.meta_rows(secret, meta),
        protect=official,
        password=sheet_password(secret, survey.id) if official else None,
    )
    if official:
        if survey.status == rules.NOT_DOWNLOADED:
            survey.status = rules.DOWNLOADED
        survey.downloaded_at = survey.downloaded_at or at
        emit(
            session,
            Outbox,
            events.FORM_DOWNLOADED,
            {
                "survey_id": survey.id,
                "campaign_id": campaign.id,
                "org_id": survey.org_id,
                "user_id": caller.user_id,
                "form_version": version,
            },
        )
    session.commit()
    org_part = rules.safe_file_part(org_data.get("name") or "organisme")
    name = f"{rules.safe_file_part(campaign.name)} - {org_part}.xlsx"
    if not official:
        name = "Version de travail - " + name
    return {
        "name": name,
        "content_type": xlsx.XLSX_CONTENT_TYPE,
        "content_b64": b64(content),
        "form_version": version,
    }


def form_notice(session, caller: Caller, survey_id, cpu=direct, now: Clock = utcnow) -> dict:
    """« Notice explicative » of the form (PDF)."""
    _survey, campaign = _visible(session, caller, survey_id, rules.today_in_france(now()))
    return {
        "name": "Notice explicative - " + rules.safe_file_part(campaign.name) + ".pdf",
        "content_type": "application/pdf",
        "content_b64": b64(cpu(render_notice, campaign.name)),
    }
