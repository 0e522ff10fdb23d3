"""« Données à renseigner »: the two numbers and the table of certifications,
edited row by row or imported from a spreadsheet."""

from __future__ import annotations

import base64

from kit.context import Caller
from kit.db import new_id, utcnow
from kit.errors import FieldErrors, ServiceError
from survey import repository as repo
from survey import xlsx
from survey.domain import campaigns as rules
from survey.domain import certifications as cert_rules
from survey.domain import form as form_rules
from survey.domain.codes import BadCode, parse_positive_int
from survey.domain.problems import Problem, count_label, details
from survey.errors import CATALOGUE as ERRORS
from survey.models import Certification, Survey
from survey.schemas import cert_dict, required_data_dict
from survey.use_cases._common import (
    Clock,
    _discard,
    _editable,
    _stored_file,
    _touch,
    _visible,
    b64,
    direct,
)

IMPORTED = "Les données ont bien été importées"


def get_required_data(session, caller: Caller, survey_id, now: Clock = utcnow) -> dict:
    survey, _campaign = _visible(session, caller, survey_id, rules.today_in_france(now()))
    return required_data_dict(survey, repo.certifications(session, survey.id))


def _count(value, field: str, errors: FieldErrors, maximum: int = 10_000) -> int | None:
    if value is None or value == "":
        errors.add(field, "Ce champ est obligatoire : nombre entier positif.")
        return None
    try:
        return parse_positive_int(value, maximum=maximum)
    except BadCode as exc:
        errors.add(field, exc.message[0].upper() + exc.message[1:])
        return None


def _replace_certifications(session, survey: Survey, rows: list[dict]) -> None:
    repo.delete_certifications(session, survey.id)
    session.flush()
    for position, row in enumerate(rows, start=1):
        session.add(Certification(id=new_id(), survey_id=survey.id, position=position, **row))


def save_required_data(session, caller: Caller, survey_id, data: dict, now: Clock = utcnow) -> dict:
    """« Enregistrer »: both numbers (mandatory, positive) and, when given,
    the whole edited table of certifications; every problem at once."""
    at = now()
    survey, _campaign = _editable(session, caller, survey_id, rules.today_in_france(at))
    if not isinstance(data, dict):
        raise ERRORS.error(
            "survey.required_data_invalid", fields={"data": ["Données mal formées."]}
        )
    errors = FieldErrors()
    establishments = _count(
        data.get("establishments_count"),
        "establishments_count",
        errors,
        maximum=form_rules.MAX_LINES,  # one row each on the form's Identité sheet
    )
    trainings = _count(data.get("trainings_count"), "trainings_count", errors)
    rows = None
    if "certifications" in data:
        given = data["certifications"]
        if not isinstance(given, list) or len(given) > cert_rules.MAX_CERTIFICATIONS_PER_FORM:
            errors.add(
                "certifications",
                f"Une liste de {cert_rules.MAX_CERTIFICATIONS_PER_FORM} certifications au plus.",
            )
        else:
            rows, seen = [], {}
            for index, item in enumerate(given):
                cert, row_errors = cert_rules.check_row(item, establishments_total=establishments)
                if cert.get("code") in seen:
                    row_errors.setdefault(
                        "code", f"code diplôme déjà présent (ligne {seen[cert['code']] + 1})."
                    )
                elif cert.get("code"):
                    seen[cert["code"]] = index
                for field, message in row_errors.items():
                    errors.add(f"certifications[{index}].{field}", message)
                rows.append(cert)
    elif establishments is not None:
        wider = [
            c.code
            for c in repo.certifications(session, survey.id)
            if c.establishments > establishments
        ]
        if wider:
            errors.add(
                "establishments_count",
                "Des certifications sont délivrées dans plus d'établissements ("
                + ", ".join(wider[:5])
                + ") : corrigez la liste ou ce nombre.",
            )
    if errors:
        raise ERRORS.error("survey.required_data_invalid", fields=errors.errors)
    survey.establishments_count = establishments
    survey.trainings_count = trainings
    if rows is not None:
        _replace_certifications(session, survey, rows)
    _touch(survey, at)
    session.commit()
    return required_data_dict(survey, repo.certifications(session, survey.id))


def _row_errors(errors: dict) -> ServiceError:
    fields = {field: [message] for field, message in errors.items()}
    return ERRORS.error("survey.certification_invalid", fields=fields)


def add_certification(session, caller: Caller, survey_id, data: dict, now: Clock = utcnow) -> dict:
    """Adds one row to the table."""
    at = now()
    survey, _campaign = _editable(session, caller, survey_id, rules.today_in_france(at))
    cert, errors = cert_rules.check_row(data, establishments_total=survey.establishments_count)
    existing = repo.certifications(session, survey.id)
    if cert.get("code") in {c.code for c in existing}:
        errors.setdefault("code", "code diplôme déjà présent dans la liste.")
    if len(existing) >= cert_rules.MAX_CERTIFICATIONS_PER_FORM:
        errors.setdefault("code", "nombre maximal de certifications atteint.")
    if errors:
        raise _row_errors(errors)
    row = Certification(id=new_id(), survey_id=survey.id, position=len(existing) + 1, **cert)
    session.add(row)
    _touch(survey, at)
    session.commit()
    return cert_dict(row)


def update_certification(
    session, caller: Caller, survey_id, cert_id, data: dict, now: Clock = utcnow
) -> dict:
    """Edits one row (only the given fields change)."""
    at = now()
    survey, _campaign = _editable(session, caller, survey_id, rules.today_in_france(at))
    row = repo.certification(session, survey.id, cert_id)
    if row is None:
        raise ERRORS.error("survey.certification_not_found")
    if not isinstance(data, dict):
        raise _row_errors({"row": "Ligne mal formée."})
    merged = dict(cert_dict(row))
    merged.update({k: v for k, v in data.items() if k in cert_rules.FIELDS})
    cert, errors = cert_rules.check_row(merged, establishments_total=survey.establishments_count)
    others = {c.code for c in repo.certifications(session, survey.id) if c.id != row.id}
    if cert.get("code") in others:
        errors.setdefault("code", "code diplôme déjà présent dans la liste.")
    if errors:
        raise _row_errors(errors)
    for field, value in cert.items():
        setattr(row, field, value)
    _touch(survey, at)
    session.commit()
    return cert_dict(row)


def delete_certification(session, caller: Caller, survey_id, cert_id, now: Clock = utcnow) -> dict:
    at = now()
    survey, _campaign = _editable(session, caller, survey_id, rules.today_in_france(at))
    row = repo.certification(session, survey.id, cert_id)
    if row is None:
        raise ERRORS.error("survey.certification_not_found")
    session.delete(row)
    _touch(survey, at)
    session.commit()
    return {"id": cert_id, "deleted": True}


def _read_certifications(data: bytes, establishments_total: int | None):
    """Runs off the hub: read the first sheet, check every row."""
    sheet, rows = xlsx.read_first_sheet(data)
    return cert_rules.parse_table(rows, sheet=sheet, establishments_total=establishments_total)


def import_certifications(
    session, caller: Caller, survey_id, file_id, files, cpu=direct, now: Clock = utcnow
) -> dict:
    """« Importer »: a certification list stored by files (kind
    ``certification_list``) replaces the table when every row is valid;
    otherwise every problem is reported and nothing changes."""
    at = now()
    survey, _campaign = _editable(session, caller, survey_id, rules.today_in_france(at))
    establishments_total = survey.establishments_count
    session.commit()
    stored = _stored_file(files, file_id, survey, "certification_list")
    try:
        certs, problems = cpu(
            _read_certifications, base64.b64decode(stored["content_b64"]), establishments_total
        )
    except xlsx.Unreadable as exc:
        _discard(files, file_id)
        raise ERRORS.error("survey.certifications_unreadable", reason=exc.message) from None
    except xlsx.OutOfBounds as exc:
        _discard(files, file_id)
        problem = Problem(
            exc.sheet,
            exc.row,
            exc.col,
            f"cellule hors des limites d'une liste de certifications ({cert_rules.MAX_ROWS} "
            "lignes au plus) : supprimez-la.",
        )
        raise ERRORS.error(
            "survey.certifications_too_large", **details([problem], located=True)
        ) from None
    if problems:
        _discard(files, file_id)
        raise ERRORS.error(
            "survey.certifications_invalid",
            errors_label=count_label(len(problems)),
            **details(problems, located=True),
        )
    survey, _campaign = _editable(session, caller, survey_id, rules.today_in_france(at))
    previous = survey.certifications_file_id
    _replace_certifications(session, survey, certs)
    survey.certifications_file_id = stored["id"]
    survey.certifications_file_name = stored.get("name") or cert_rules.TEMPLATE_NAME
    survey.certifications_imported_at = at
    _touch(survey, at)
    session.commit()
    if previous and previous != stored["id"]:
        _discard(files, previous)
    result = required_data_dict(survey, repo.certifications(session, survey.id))
    result["message"] = IMPORTED
    return result


def certification_template(cpu=direct) -> dict:
    return {
        "name": cert_rules.TEMPLATE_NAME,
        "content_type": xlsx.XLSX_CONTENT_TYPE,
        "content_b64": b64(cpu(xlsx.certification_template)),
    }


def certifications_file(session, caller: Caller, survey_id, now: Clock = utcnow) -> dict:
    """« Fichier actuel »: the last imported list (its file id in files)."""
    survey, _campaign = _visible(session, caller, survey_id, rules.today_in_france(now()))
    if not survey.certifications_file_id:
        raise ERRORS.error("survey.certifications_file_not_found")
    return {"file_id": survey.certifications_file_id, "name": survey.certifications_file_name}
