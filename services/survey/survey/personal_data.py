"""Personal data in survey (RGPD): retention of transmissions, a person's
export and erasure.

Retention: what organisations transmit for a campaign (the filled forms, the
values extracted from them, the « pièces à fournir » and the imported
certification lists) is kept for the campaign and ``SURVEY_RETENTION_YEARS``
more (default 5, counted from the campaign's closing date): France
compétences uses each campaign's analytic accounting to set and review the
funding levels of apprenticeship contracts over the following years, and
five years is the ordinary limitation period (code civil, art. 2224) for
claims based on them. Then the files are deleted through the files service
(as the system caller) and the rows with them; the survey rows themselves
(status, dates, counts) stay for the statistics.

A person's data: the transmissions they submitted (with the name and e-mail
copied at submission) and the attachments they uploaded. Erasure replaces
the copied name and e-mail; the transmissions belong to the organisation and
follow the retention above. The user id stays (a pseudonym once identity
has anonymised the account). The same erasure runs when identity announces
an account anonymised (``identity.person_anonymised``: retention or request).

The retention job takes ``now`` and, on PostgreSQL, its rows with SKIP
LOCKED: several replicas never purge the same row.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable

from sqlalchemy import select

from kit.context import SYSTEM, Caller
from kit.db import utcnow
from survey.errors import CATALOGUE as ERRORS
from survey.models import Attachment, Campaign, Survey, Transmission

log = logging.getLogger(__name__)

SURVEY_RETENTION_YEARS = 5
ERASED_NAME = "Anonyme"


def retention_years() -> int:
    raw = os.environ.get("SURVEY_RETENTION_YEARS", "")
    try:
        return max(int(raw), 0) if raw else SURVEY_RETENTION_YEARS
    except ValueError:
        return SURVEY_RETENTION_YEARS


def kept_until(closes_on: dt.date, years: int) -> dt.date:
    """The last day a campaign's transmissions are kept."""
    try:
        return closes_on.replace(year=closes_on.year + years)
    except ValueError:  # 29 February
        return closes_on.replace(year=closes_on.year + years, day=28)


def _locked(session, query):
    if session.bind.dialect.name == "postgresql":
        return query.with_for_update(skip_locked=True)
    return query


def _expired_surveys(session, today: dt.date, years: int) -> list[str]:
    campaigns = session.execute(select(Campaign.id, Campaign.closes_on)).all()
    expired = [cid for cid, closes in campaigns if kept_until(closes, years) < today]
    if not expired:
        return []
    return list(session.scalars(select(Survey.id).where(Survey.campaign_id.in_(expired))))


def run_retention(
    session,
    delete_file: Callable[[str], None],
    now: dt.datetime | None = None,
    limit: int = 200,
) -> dict:
    """Purges what campaigns past their retention still hold (module
    docstring). ``delete_file(file_id)`` is idempotent; a file it could not
    delete keeps its row for the next run. Returns the counts, logged."""
    now = now or utcnow()
    years = retention_years()
    surveys = _expired_surveys(session, now.date(), years)
    counts = {"transmissions_purged": 0, "attachments_purged": 0, "lists_purged": 0}
    if surveys:
        purged = ((Transmission, "transmissions_purged"), (Attachment, "attachments_purged"))
        for model, key in purged:
            rows = session.scalars(
                _locked(session, select(model).where(model.survey_id.in_(surveys)).limit(limit))
            ).all()
            for row in rows:
                if _deleted(delete_file, row.file_id):
                    session.delete(row)
                    counts[key] += 1
            session.commit()
        rows = session.scalars(
            _locked(
                session,
                select(Survey)
                .where(Survey.id.in_(surveys), Survey.certifications_file_id.is_not(None))
                .limit(limit),
            )
        ).all()
        for survey in rows:
            if _deleted(delete_file, survey.certifications_file_id):
                survey.certifications_file_id = None
                survey.certifications_file_name = None
                counts["lists_purged"] += 1
        session.commit()
    log.info(
        "survey retention (%d years): %s",
        years,
        ", ".join(f"{k}={v}" for k, v in counts.items()),
        extra={"retention": counts},
    )
    return counts


def _deleted(delete_file, file_id: str) -> bool:
    try:
        delete_file(file_id)
    except Exception as exc:  # noqa: BLE001 - the next run tries again
        log.info("survey retention: file %s kept for the next run (%s)", file_id, exc)
        return False
    return True


def _require_agency(caller: Caller) -> None:
    if SYSTEM not in caller.roles:
        caller.require_agency()


def _user_id(user_id) -> str:
    if not isinstance(user_id, str) or not 1 <= len(user_id) <= 64:
        raise ERRORS.error("invalid_input", fields={"user_id": ["Identifiant attendu."]})
    return user_id


def export_person(session, caller: Caller, user_id) -> dict:
    """Agency: {transmissions, attachments} the person submitted or uploaded
    (with their campaign and organisation); files by id."""
    _require_agency(caller)
    user_id = _user_id(user_id)
    transmissions = session.execute(
        select(Transmission, Survey, Campaign)
        .join(Survey, Transmission.survey_id == Survey.id)
        .join(Campaign, Survey.campaign_id == Campaign.id)
        .where(Transmission.submitted_by == user_id)
        .order_by(Transmission.submitted_at)
    ).all()
    attachments = session.execute(
        select(Attachment, Survey)
        .join(Survey, Attachment.survey_id == Survey.id)
        .where(Attachment.uploaded_by == user_id)
        .order_by(Attachment.created_at)
    ).all()
    return {
        "transmissions": [
            {
                "id": t.id,
                "survey_id": s.id,
                "campaign": c.name,
                "org_id": s.org_id,
                "version": t.seq,
                "file_id": t.file_id,
                "file_name": t.file_name,
                "size": t.size,
                "sha256": t.sha256,
                "submitted_at": t.submitted_at.isoformat(),
                "submitter_name": t.submitter_name,
                "submitter_email": t.submitter_email,
                "kept_until": kept_until(c.closes_on, retention_years()).isoformat(),
            }
            for t, s, c in transmissions
        ],
        "attachments": [
            {
                "id": a.id,
                "survey_id": s.id,
                "org_id": s.org_id,
                "file_id": a.file_id,
                "name": a.name,
                "content_type": a.content_type,
                "size": a.size,
                "created_at": a.created_at.isoformat(),
            }
            for a, s in attachments
        ],
    }


def erase_person(session, caller: Caller, user_id) -> dict:
    """Agency: the name and e-mail copied on the person's transmissions are
    replaced. Idempotent. Returns {transmissions_anonymised}."""
    _require_agency(caller)
    return _erase(session, _user_id(user_id))


def person_anonymised(session, payload: dict) -> dict:
    """identity.person_anonymised (retention or a request): the same erasure
    as ``erase_person``. Idempotent: a second delivery, or one after the
    agency's erasure, finds nothing left to replace."""
    return _erase(session, _user_id(payload.get("user_id")))


def _erase(session, user_id: str) -> dict:
    changed = 0
    for row in session.scalars(
        select(Transmission).where(Transmission.submitted_by == user_id)
    ).all():
        if row.submitter_name != ERASED_NAME or row.submitter_email:
            row.submitter_name, row.submitter_email = ERASED_NAME, ""
            changed += 1
    session.commit()
    return {"transmissions_anonymised": changed}
