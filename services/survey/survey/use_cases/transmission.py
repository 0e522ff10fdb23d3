"""Transmission: a filled form checked and recorded with its extracted
values, idempotently; the transmissions listed and read back.

The path of ``transmit`` is performance-critical: reads without a transaction
(``kit.db.read_only``) until the form is stored, then its writes under the survey's lock."""

from __future__ import annotations

import base64

from sqlalchemy.exc import IntegrityError

from kit import events
from kit.context import Caller
from kit.db import new_id, read_only, utcnow
from kit.errors import Conflict, InvalidInput
from kit.outbox import emit
from survey import repository as repo
from survey import xlsx
from survey.domain import campaigns as rules
from survey.domain import form as form_rules
from survey.domain.problems import Problem, count_label, details
from survey.errors import CATALOGUE as ERRORS
from survey.models import Outbox, Survey, Transmission
from survey.schemas import cert_dict, transmission_dict
from survey.use_cases._common import (
    Clock,
    _check_submittable,
    _discard,
    _public_facts,
    _require_xlsx_name,
    _stored_file,
    _submittable,
    _touch,
    _visible,
    direct,
    member_orgs,
)


def _check_form(book, snapshot: dict, digest: str):
    """Off the hub: the structure and every value of a filled form."""
    layout = form_rules.build_layout(snapshot, cells=False)
    found = form_rules.structure_problems(
        layout, book, digest, lambda: form_rules.build_layout(snapshot)
    )
    # a formula typed in an input cell is a value to correct there, not a
    # change of the locked structure
    inputs = layout.input_columns()
    in_inputs = [p for p in found if p.col in inputs.get(p.sheet, {}).get(p.row, ())]
    structure = [p for p in found if p not in in_inputs]
    values, problems = form_rules.check_values(layout, book)
    return values, structure, in_inputs + problems


def validate_form(session, survey: Survey, data: bytes, secret: bytes, cpu=direct):
    """(form version, extracted values) of a filled form of ``survey``, or
    the error that refuses it (every problem at once, with cell references)."""
    try:
        book = cpu(xlsx.read_book, data)
    except xlsx.Unreadable as exc:
        raise ERRORS.error("survey.form_unreadable", reason=exc.message) from None
    except xlsx.OutOfBounds as exc:
        problem = Problem(exc.sheet, exc.row, exc.col, "cellule hors des limites du formulaire.")
        raise ERRORS.error("survey.form_structure_changed", **details([problem])) from None
    if form_rules.META not in book.values:
        raise ERRORS.error("survey.form_not_preformatted")
    meta = form_rules.read_meta(book.values[form_rules.META])
    if meta.get("format") != form_rules.FORMAT:
        raise ERRORS.error("survey.form_not_preformatted")
    if not form_rules.signature_valid(secret, meta):
        raise ERRORS.error("survey.form_signature_invalid")
    if meta.get("purpose") == form_rules.WORKING:
        raise ERRORS.error("survey.form_working_copy")
    if meta.get("org_id") != survey.org_id:
        raise ERRORS.error("survey.form_other_organisation")
    if meta.get("survey_id") != survey.id:
        raise ERRORS.error("survey.form_other_survey")
    try:
        version = int(meta.get("form_version") or "")
    except ValueError:
        raise ERRORS.error("survey.form_not_preformatted") from None
    record = repo.form(session, survey.id, version)
    if record is None or record.digest != meta.get("digest"):
        raise ERRORS.error("survey.form_not_preformatted")
    current = {
        "establishments_count": survey.establishments_count,
        "trainings_count": survey.trainings_count,
        "certifications": [
            {k: v for k, v in cert_dict(c).items() if k != "id"}
            for c in repo.certifications(session, survey.id)
        ],
    }
    if form_rules.snapshot_data_hash(current) != record.data_hash:
        raise ERRORS.error("survey.form_outdated")
    snapshot, digest = record.snapshot, record.digest
    session.commit()
    values, structure, problems = cpu(_check_form, book, snapshot, digest)
    everything = sorted(
        structure + problems,
        key=lambda p: (
            form_rules.SHEETS.index(p.sheet) if p.sheet in form_rules.SHEETS else 99,
            p.row,
            p.col,
        ),
    )
    if structure:
        raise ERRORS.error(
            "survey.form_structure_changed",
            variant="listed",
            errors_label=count_label(len(everything)),
            **details(everything),
        )
    if problems:
        raise ERRORS.error(
            "survey.form_invalid", errors_label=count_label(len(problems)), **details(everything)
        )
    values["form_version"] = version
    return version, values


def _existing(session, survey_id: str, *, key=None, file_id=None, sha256=None):
    """The transmission a retry repeats: same idempotency key, same stored
    file, or the same bytes as the latest transmission. The same bytes as an
    earlier one, sent after another file, are a new version (people go back
    to an earlier file)."""
    for name, value in (("idempotency_key", key), ("file_id", file_id)):
        if value and (name == "idempotency_key" or repo.is_id(value)):
            found = repo.transmission_by(session, survey_id, **{name: value})
            if found is not None:
                return found
    if sha256:
        latest = repo.latest_transmission(session, survey_id)
        if latest is not None and latest.sha256 == sha256:
            return latest
    return None


def _clean_key(key) -> str | None:
    if key is None or key == "":
        return None
    if not isinstance(key, str) or not 8 <= len(key) <= 100 or not key.isprintable():
        raise ERRORS.error(
            "survey.invalid_input", fields={"idempotency_key": ["8 à 100 caractères imprimables."]}
        )
    return key


def submit_response(
    session,
    caller: Caller,
    survey_id,
    file_id,
    files,
    identity,
    secret: bytes,
    cpu=direct,
    now: Clock = utcnow,
    idempotency_key: str | None = None,
) -> dict:
    """« Envoyer »: a filled form stored by files (kind ``survey_form``) is
    checked (the pre-formatted form of this organisation and survey, structure
    unchanged, values valid) and recorded with its extracted values; the
    status becomes « déposée » and ``survey.response_submitted`` goes out.
    Earlier versions are kept, and an earlier file sent again becomes the
    latest version. Idempotent: the same key or stored file, or the same
    bytes as the latest transmission, give back the transmission already
    recorded."""
    try:
        key = _clean_key(idempotency_key)
    except InvalidInput:
        _discard(files, file_id)  # files checks the caller may delete it
        raise
    at = now()
    survey, campaign = _submittable(session, caller, survey_id, rules.today_in_france(at))
    done = _existing(session, survey.id, key=key, file_id=file_id)
    if done is not None:
        return dict(transmission_dict(done), status="already_recorded")
    latest = repo.latest_transmission(session, survey.id)
    session.commit()
    me = identity.get_me()
    if me.get("role") != "manager":  # no longer a manager since signing in
        _discard(files, file_id)
        raise ERRORS.error("survey.manager_only")
    stored = _stored_file(files, file_id, survey, "survey_form")
    data = base64.b64decode(stored["content_b64"])
    return _check_and_record(
        session,
        caller,
        survey,
        survey_id,
        key,
        me,
        stored,
        data,
        files,
        secret,
        cpu,
        now,
        at,
        latest,
    )


def transmit(
    session,
    caller: Caller,
    survey_id,
    upload: dict,
    files,
    identity,
    secret: bytes,
    cpu=direct,
    now: Clock = utcnow,
    idempotency_key: str | None = None,
    submitter: dict | None = None,
) -> dict:
    """« Envoyer » in one call: what ``prepare_upload`` (purpose
    ``response``), ``files.store_xlsx`` and ``submit_response`` do one after
    the other, with the bytes crossing the bus once on their way to files and
    never coming back: ``upload = {name, content_b64}``. Same rules, same
    order of refusals and the same error codes as those three calls; a retry
    with a key already recorded stores nothing. Nothing is stored before the
    caller is known to be a manager of an open survey.

    ``submitter`` {name, email} comes from the caller's session token (the
    gateway's): the caller's role is checked from the same token (a role
    change revokes the sessions: identity.update_user), so identity is not asked; without
    it (an older token, another client), ``identity.get_me`` says both."""
    if not isinstance(upload, dict):
        upload = {}
    name = upload.get("name") if isinstance(upload.get("name"), str) else ""
    content_b64 = upload.get("content_b64") if isinstance(upload.get("content_b64"), str) else ""
    # reads only until the form is stored, all of them made again under the
    # survey's lock before anything is written: no BEGIN/COMMIT round trips
    read_only(session)
    at = now()
    survey, campaign = _submittable(session, caller, survey_id, rules.today_in_france(at))
    _require_xlsx_name(name.strip())
    key = _clean_key(idempotency_key)
    latest, done = repo.latest_and_keyed(session, survey.id, key)
    if done is not None:
        return dict(transmission_dict(done), status="already_recorded")
    org = repo.organisation(session, survey.org_id)  # read with the survey: no query
    meta = {
        "kind": "survey_form",
        "name": rules.transmission_file_name(campaign.name, org.name if org else "organisme", at),
        "content_type": xlsx.XLSX_CONTENT_TYPE,
        "owner_org_id": survey.org_id,
    }
    session.commit()
    me = _submitter(submitter)
    if me is None:
        me = identity.get_me()
        if me.get("role") != "manager":  # no longer a manager since signing in
            raise ERRORS.error("survey.manager_only")
    stored = files.store_xlsx(meta, content_b64)  # files' checks, then its record and blob
    data = base64.b64decode(content_b64)
    return _check_and_record(
        session,
        caller,
        survey,
        survey_id,
        key,
        me,
        stored,
        data,
        files,
        secret,
        cpu,
        now,
        at,
        latest,
    )


def _submitter(submitter) -> dict | None:
    """{display_name, email} of a well-formed ``submitter``, else None."""
    if not isinstance(submitter, dict):
        return None
    name, email = submitter.get("name"), submitter.get("email")
    if not (isinstance(name, str) and isinstance(email, str) and name.strip() and "@" in email):
        return None
    return {"display_name": name.strip(), "email": email.strip()}


def _check_and_record(
    session,
    caller,
    survey,
    survey_id,
    key,
    me,
    stored,
    data,
    files,
    secret,
    cpu,
    now,
    at,
    latest,
) -> dict:
    """The stored form checked, then recorded (or the transmission that it repeats).

    ``latest``: the survey's latest transmission as read before the file was
    stored (None: none yet), for the early "same bytes again" answer; the
    decisive check is made again under the survey's lock."""
    read_only(session)  # the checks' reads: the writes below take their own transaction
    sha256 = stored.get("sha256")
    done = latest if latest is not None and sha256 and latest.sha256 == sha256 else None
    if done is not None:
        if done.file_id != stored["id"]:
            _discard(files, stored["id"])
        return dict(transmission_dict(done), status="already_recorded")
    try:
        version, values = validate_form(session, survey, data, secret, cpu)
    except (InvalidInput, Conflict):
        _discard(files, stored["id"])
        raise
    for _attempt in range(3):
        # locked and read afresh (the state may have changed while the form was
        # stored and checked): blocked, closed, still visible to the caller
        survey = repo.survey(session, survey.id, for_update=True, fresh=True)
        campaign = repo.campaign_of(session, survey)
        today = rules.today_in_france(now())
        if survey.org_id not in member_orgs(caller) or not rules.is_online(
            campaign.online_on, today
        ):
            raise ERRORS.error("survey.not_found")
        _check_submittable(caller, survey, campaign, today)
        latest, done = repo.latest_and_keyed(session, survey.id, key)
        done = done or (
            latest if latest is not None and latest.sha256 == stored.get("sha256") else None
        )
        if done is not None:  # the same upload, recorded meanwhile by another worker
            session.commit()
            if done.file_id != stored["id"]:
                _discard(files, stored["id"])
            return dict(transmission_dict(done), status="already_recorded")
        row = Transmission(
            id=new_id(),
            survey_id=survey.id,
            seq=(latest.seq if latest is not None else 0) + 1,  # under the survey's lock
            file_id=stored["id"],
            file_name=stored.get("name") or "formulaire.xlsx",
            sha256=stored.get("sha256") or "",
            size=int(stored.get("size") or 0),
            form_version=version,
            values=values,
            submitted_by=caller.user_id,
            submitter_name=(me.get("display_name") or "")[:210],
            submitter_email=(me.get("email") or "")[:254],
            idempotency_key=key,
            submitted_at=at,
        )
        session.add(row)
        survey.status = rules.SUBMITTED
        survey.last_sent_at = at
        _touch(survey, at)
        emit(
            session,
            Outbox,
            events.RESPONSE_SUBMITTED,
            {
                "survey_id": survey.id,
                "campaign_id": campaign.id,
                "org_id": survey.org_id,
                "transmission_id": row.id,
                "seq": row.seq,
                "file_id": row.file_id,
                "file_name": row.file_name,
                "sha256": row.sha256,
                "form_version": version,
                "submitted_by": caller.user_id,
                "submitted_at": at.isoformat(),
                "size": row.size,
                **_public_facts(session, survey.org_id, campaign),
            },
        )
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            done = _existing(
                session, survey_id, key=key, file_id=stored["id"], sha256=stored.get("sha256")
            )
            if done is not None:
                return dict(transmission_dict(done), status="already_recorded")
            continue  # another version took this number: take the next one
        return dict(transmission_dict(row), status="recorded")
    raise ERRORS.error("survey.busy", variant="transmission")


def get_transmission(
    session, caller: Caller, survey_id, transmission_id, now: Clock = utcnow
) -> dict:
    """One transmitted file (its id in files), to download it again."""
    survey, _campaign = _visible(session, caller, survey_id, rules.today_in_france(now()))
    row = repo.transmission(session, survey.id, transmission_id)
    if row is None:
        raise ERRORS.error("survey.transmission_not_found")
    return dict(transmission_dict(row), file_id=row.file_id)


def list_transmissions(session, caller: Caller, survey_id, now: Clock = utcnow) -> list[dict]:
    survey, _campaign = _visible(session, caller, survey_id, rules.today_in_france(now()))
    return [transmission_dict(t) for t in repo.transmissions(session, survey.id)]


def get_response_values(
    session, caller: Caller, survey_id, transmission_id, now: Clock = utcnow
) -> dict:
    """The values extracted from one transmission (agency and the organisation)."""
    survey, _campaign = _visible(session, caller, survey_id, rules.today_in_france(now()))
    row = repo.transmission(session, survey.id, transmission_id)
    if row is None:
        raise ERRORS.error("survey.transmission_not_found")
    return dict(transmission_dict(row), values=form_rules.in_euros(row.values))
