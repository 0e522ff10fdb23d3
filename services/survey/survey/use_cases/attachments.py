"""« Pièces à fournir »: the documents attached to a survey."""

from __future__ import annotations

from kit.context import Caller
from kit.db import new_id, utcnow
from kit.errors import NotFound
from survey import repository as repo
from survey.domain import attachments as attachment_rules
from survey.domain import campaigns as rules
from survey.errors import CATALOGUE as ERRORS
from survey.models import Attachment, Survey
from survey.schemas import attachment_dict
from survey.use_cases._common import Clock, _discard, _editable, _touch, _visible


def list_attachments(session, caller: Caller, survey_id, now: Clock = utcnow) -> list[dict]:
    survey, _campaign = _visible(session, caller, survey_id, rules.today_in_france(now()))
    return [attachment_dict(a) for a in repo.attachments(session, survey.id)]


def _attachment_file(files, file_id, survey: Survey) -> dict:
    if not repo.is_id(file_id):
        raise ERRORS.error("survey.file_invalid", fields={"file_id": ["Fichier manquant."]})
    try:
        info = files.get_file_info(file_id)
    except NotFound:
        raise ERRORS.error("survey.file_invalid", variant="document_missing") from None
    if info.get("owner_org_id") != survey.org_id or info.get("kind") != "attachment":
        raise ERRORS.error("survey.file_invalid", variant="document_mismatch")
    return info


def add_attachment(session, caller: Caller, survey_id, file_id, files, now: Clock = utcnow) -> dict:
    """« Ajouter »: records a document stored by files (kind ``attachment``)."""
    at = now()
    survey, _campaign = _editable(session, caller, survey_id, rules.today_in_france(at))
    existing = repo.attachment_by_file(session, survey.id, file_id) if repo.is_id(file_id) else None
    if existing is not None:
        return attachment_dict(existing)
    session.commit()
    info = _attachment_file(files, file_id, survey)
    survey, _campaign = _editable(session, caller, survey_id, rules.today_in_france(at))
    if len(repo.attachments(session, survey.id)) >= attachment_rules.MAX_PER_SURVEY:
        _discard(files, file_id)
        raise ERRORS.error(
            "survey.attachments_full", max_attachments=attachment_rules.MAX_PER_SURVEY
        )
    row = Attachment(
        id=new_id(),
        survey_id=survey.id,
        file_id=info["id"],
        name=info.get("name") or "document",
        content_type=info.get("content_type") or "application/octet-stream",
        size=int(info.get("size") or 0),
        uploaded_by=caller.user_id,
        created_at=at,
        updated_at=at,
    )
    session.add(row)
    _touch(survey, at)
    session.commit()
    return attachment_dict(row)


def replace_attachment(
    session, caller: Caller, survey_id, attachment_id, file_id, files, now: Clock = utcnow
) -> dict:
    """« Modifier »: the document is replaced; the former file is deleted."""
    at = now()
    survey, _campaign = _editable(session, caller, survey_id, rules.today_in_france(at))
    row = repo.attachment(session, survey.id, attachment_id)
    if row is None:
        raise ERRORS.error("survey.attachment_not_found")
    if row.file_id == file_id:
        return attachment_dict(row)
    session.commit()
    info = _attachment_file(files, file_id, survey)
    row = repo.attachment(session, survey.id, attachment_id)
    if row is None:
        raise ERRORS.error("survey.attachment_not_found")
    previous = row.file_id
    row.file_id = info["id"]
    row.name = info.get("name") or row.name
    row.content_type = info.get("content_type") or row.content_type
    row.size = int(info.get("size") or 0)
    row.updated_at = at
    session.commit()
    _discard(files, previous)
    return attachment_dict(row)


def delete_attachment(
    session, caller: Caller, survey_id, attachment_id, files, now: Clock = utcnow
) -> dict:
    """« Supprimer »."""
    at = now()
    survey, _campaign = _editable(session, caller, survey_id, rules.today_in_france(at))
    row = repo.attachment(session, survey.id, attachment_id)
    if row is None:
        raise ERRORS.error("survey.attachment_not_found")
    file_id = row.file_id
    session.delete(row)
    _touch(survey, at)
    session.commit()
    _discard(files, file_id)
    return {"id": attachment_id, "deleted": True}


def get_attachment(session, caller: Caller, survey_id, attachment_id, now: Clock = utcnow) -> dict:
    """« Exporter »: the document's file id in files."""
    survey, _campaign = _visible(session, caller, survey_id, rules.today_in_france(now()))
    row = repo.attachment(session, survey.id, attachment_id)
    if row is None:
        raise ERRORS.error("survey.attachment_not_found")
    return dict(attachment_dict(row), file_id=row.file_id)
