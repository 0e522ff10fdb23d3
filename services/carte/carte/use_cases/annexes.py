"""Annexes: the files joined to a draft."""

from __future__ import annotations

import datetime as dt

from carte import repository as repo
from carte.domain.access import Actor
from carte.models import Annex
from carte.problems import error as problem
from carte.use_cases._common import (
    _campaign_of,
    _editable,
    _full,
    _one_error,
    _open_campaign,
    _visible,
)
from kit.db import utcnow

MAX_ANNEXES = 10


def prepare_annex(session, actor: Actor, request_id, now: dt.datetime | None = None) -> dict:
    """May the caller add an annex now? Called before the upload reaches the
    files service. Errors: carte.request_not_found, carte.request_validated,
    carte.annexes_full (409)."""
    now = now or utcnow()
    req = _editable(session, actor, request_id)
    _open_campaign(session, now, _campaign_of(session, req))
    count = repo.annex_count(session, req.id)
    if count >= MAX_ANNEXES:
        raise problem("carte.annexes_full", max_annexes=MAX_ANNEXES)
    session.rollback()
    return {"request_id": req.id, "remaining": MAX_ANNEXES - count}


def add_annex(session, actor: Actor, request_id, meta, now: dt.datetime | None = None) -> dict:
    """Joins a stored file {file_id, name, size, content_type}."""
    now = now or utcnow()
    req = _editable(session, actor, request_id)
    _open_campaign(session, now, _campaign_of(session, req))
    if not isinstance(meta, dict) or not isinstance(meta.get("file_id"), str):
        raise _one_error("file", "carte.annex_invalid", "Fichier manquant.")
    count = repo.annex_count(session, req.id)
    if count >= MAX_ANNEXES:
        raise problem("carte.annexes_full", max_annexes=MAX_ANNEXES)
    annex = Annex(
        request_id=req.id,
        file_id=meta["file_id"][:64],
        name=str(meta.get("name") or "annexe")[:255],
        content_type=str(meta.get("content_type") or "application/octet-stream")[:120],
        size=int(meta.get("size") or 0),
        added_by=actor.user_id,
        created_at=now,
    )
    session.add(annex)
    req.version += 1
    req.updated_at = now
    session.commit()
    return _full(session, req, actor)


def remove_annex(session, actor: Actor, request_id, annex_id, now: dt.datetime | None = None):
    now = now or utcnow()
    req = _editable(session, actor, request_id)
    annex = repo.by_id(session, Annex, annex_id)
    if annex is None or annex.request_id != req.id:
        raise problem("carte.annex_not_found")
    session.delete(annex)
    req.version += 1
    req.updated_at = now
    session.commit()
    return _full(session, req, actor)


def annex_file(session, actor: Actor, request_id, annex_id) -> dict:
    """{file_id, name} of an annex of a request the caller can see."""
    req = _visible(session, actor, request_id)
    annex = repo.by_id(session, Annex, annex_id)
    if annex is None or annex.request_id != req.id:
        raise problem("carte.annex_not_found")
    session.rollback()  # the bytes are fetched next, over RPC
    return {"file_id": annex.file_id, "name": annex.name, "content_type": annex.content_type}
