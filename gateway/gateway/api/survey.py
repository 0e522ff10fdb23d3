"""HTTP API of section II of the Karoussel guide: « Enquêtes en ligne »
(données à renseigner, certification list, form, working copy, notice,
« Pièces à fournir »), « Transmission enquêtes », « Statut des enquêtes », and
the agency's campaigns, blocking and exports.

Views stay thin: parse, one to three RPCs, shape the response. An upload
reaches the files service once: the survey service first says whether the
caller may upload it there and how files must store it (``prepare_upload``,
before any byte is kept), files runs its safety checks while storing
(``store_xlsx`` for spreadsheets), then the survey service takes the file id.
A transmission, the deadline's hot path, is one RPC instead (``survey.transmit``
does those three steps inside survey, the bytes crossing the bus once to
survey and once to files, never back).
Heavy routes (uploads, generated workbooks, exports) are bounded per worker
process: beyond ``SURVEY_HEAVY_CONCURRENCY`` at once, 503 ``survey.busy``
with ``Retry-After``. Error codes are those of the survey and files services
(see the OpenAPI document). ``heavy`` and ``user_key`` are shared with the
HTML pages of the same section (``gateway.pages.surveys``); uploads are read,
stored and sent back by ``gateway.uploads``, as in every other section.
"""

from __future__ import annotations

import base64
import functools
import threading

from flask import Blueprint, current_app, g, jsonify, request, url_for

from gateway import auth, uploads
from gateway.errors import GatewayError, json_body
from gateway.ratelimit import limit
from gateway.rpc import rpc
from gateway.uploads import send_document, send_stored_file

bp = Blueprint("survey_api", __name__)

HEAVY_TIMEOUT = 30.0  # seconds for RPCs that parse or build workbooks
HEAVY_WAIT = 2.0  # seconds a heavy request may wait for its turn
RETRY_AFTER = 5
EXTENSION = "gateway.survey.heavy"


# ---------------------------------------------------------------- helpers


def heavy(view):
    """At most ``SURVEY_HEAVY_CONCURRENCY`` heavy requests at once per worker
    process; the others wait briefly, then get 503 with ``Retry-After``."""

    @functools.wraps(view)
    def bounded(*args, **kwargs):
        app = current_app._get_current_object()
        gate = app.extensions.get(EXTENSION)
        if gate is None:
            gate = app.extensions.setdefault(
                EXTENSION,
                threading.BoundedSemaphore(int(app.config.get("SURVEY_HEAVY_CONCURRENCY", 4))),
            )
        if not gate.acquire(timeout=HEAVY_WAIT):
            raise GatewayError(
                503,
                "survey.busy",
                "Le service des enquêtes est très sollicité : réessayez dans quelques instants.",
                {"retry_after": RETRY_AFTER},
            )
        try:
            return view(*args, **kwargs)
        finally:
            gate.release()

    return bounded


def user_key() -> str:
    return g.caller.user_id or "anonymous"


def _transmission_links(survey_id: str, rows: list[dict]) -> list[dict]:
    """« Téléchargement » of « Liste des fichiers transmis »: each row's file."""
    for row in rows:
        row["download_url"] = url_for(
            "survey_api.download_transmission", survey_id=survey_id, transmission_id=row["id"]
        )
    return rows


def _attachment_links(survey_id: str, rows: list[dict]) -> list[dict]:
    """« Exporter » of « Pièces à fournir »: each document."""
    for row in rows:
        row["download_url"] = url_for(
            "survey_api.export_attachment", survey_id=survey_id, attachment_id=row["id"]
        )
    return rows


def _filters(*names: str) -> dict:
    return {name: request.args.get(name) for name in names if request.args.get(name) is not None}


# ---------------------------------------------------------------- campaigns (agency)


@bp.post("/survey-campaigns")
@auth.agency_required
def create_campaign():
    """Agency: « Nouvelle enquête » → 201 the campaign."""
    return jsonify(rpc().survey.create_campaign(json_body())), 201


@bp.get("/survey-campaigns")
@auth.agency_required
def list_campaigns():
    return jsonify({"items": rpc().survey.list_campaigns()})


@bp.get("/survey-campaigns/<campaign_id>")
@auth.agency_required
def get_campaign(campaign_id):
    return jsonify(rpc().survey.get_campaign(campaign_id))


@bp.get("/survey-campaigns/<campaign_id>/export")
@auth.agency_required
@heavy
def export_campaign(campaign_id):
    """Agency: the extracted data of every organisation, ``?format=xlsx|csv``."""
    fmt = request.args.get("format", "xlsx")
    return send_document(rpc(HEAVY_TIMEOUT).survey.export_responses(campaign_id, fmt))


@bp.post("/surveys/<survey_id>/block")
@auth.agency_required
def block_survey(survey_id):
    return jsonify(rpc().survey.set_blocked(survey_id, True))


@bp.post("/surveys/<survey_id>/unblock")
@auth.agency_required
def unblock_survey(survey_id):
    return jsonify(rpc().survey.set_blocked(survey_id, False))


# ---------------------------------------------------------------- listings


@bp.get("/surveys")
@auth.login_required
def list_surveys():
    """« Enquêtes en ligne », ``?sent_from=&sent_to=`` (Date de dernier envoi)."""
    return jsonify(rpc().survey.list_surveys(_filters("sent_from", "sent_to")))


@bp.get("/survey-statuses")
@auth.login_required
def list_statuses():
    """« Statut des enquêtes »: ``?blocked=true|false&campaign_id=&status=&q=&page=&per_page=``."""
    filters = _filters("blocked", "campaign_id", "status", "q", "page", "per_page")
    return jsonify(rpc().survey.list_statuses(filters))


@bp.get("/surveys/<survey_id>")
@auth.login_required
def get_survey(survey_id):
    """A survey's page with « Liste des fichiers transmis » (#, Fichier, Date
    de transmission, Nom, Mail, Téléchargement: ``download_url``)."""
    page = rpc().survey.get_survey(survey_id)
    _transmission_links(page["id"], page.get("transmissions") or [])
    return jsonify(page)


# ---------------------------------------------------------------- données à renseigner


@bp.get("/surveys/<survey_id>/required-data")
@auth.login_required
def get_required_data(survey_id):
    return jsonify(rpc().survey.get_required_data(survey_id))


@bp.put("/surveys/<survey_id>/required-data")
@auth.login_required
def save_required_data(survey_id):
    """« Enregistrer »: {establishments_count, trainings_count, certifications?}."""
    return jsonify(rpc().survey.save_required_data(survey_id, json_body()))


@bp.post("/surveys/<survey_id>/certifications")
@auth.login_required
def add_certification(survey_id):
    return jsonify(rpc().survey.add_certification(survey_id, json_body())), 201


@bp.patch("/surveys/<survey_id>/certifications/<cert_id>")
@auth.login_required
def update_certification(survey_id, cert_id):
    return jsonify(rpc().survey.update_certification(survey_id, cert_id, json_body()))


@bp.delete("/surveys/<survey_id>/certifications/<cert_id>")
@auth.login_required
def delete_certification(survey_id, cert_id):
    return jsonify(rpc().survey.delete_certification(survey_id, cert_id))


@bp.post("/surveys/<survey_id>/certifications/import")
@auth.login_required
@limit("survey-import", per_minute=30, key=user_key)
@heavy
def import_certifications(survey_id):
    """« Importer » (multipart ``file``, .xlsx)."""
    stored = uploads.store_survey_upload(rpc, survey_id, "certifications")
    return jsonify(rpc(HEAVY_TIMEOUT).survey.import_certifications(survey_id, stored["id"]))


@bp.get("/surveys/<survey_id>/certifications/file")
@auth.login_required
def certifications_file(survey_id):
    """« Fichier actuel »: the last imported list."""
    current = rpc().survey.certifications_file(survey_id)
    return send_stored_file(rpc(HEAVY_TIMEOUT).files.get_file(current["file_id"]))


@bp.get("/survey-templates/certifications")
@auth.login_required
def certification_template():
    """« Liste-certifications.xlsx », the list to fill in."""
    return send_document(rpc().survey.certification_template())


# ---------------------------------------------------------------- the form


@bp.get("/surveys/<survey_id>/form")
@auth.login_required
@heavy
def download_form(survey_id):
    """The pre-formatted, locked form (the only one accepted back)."""
    return send_document(rpc(HEAVY_TIMEOUT).survey.generate_form(survey_id, "official"))


@bp.get("/surveys/<survey_id>/form/working-copy")
@auth.login_required
@heavy
def download_working_copy(survey_id):
    """An editable copy to prepare the figures; never accepted for transmission."""
    return send_document(rpc(HEAVY_TIMEOUT).survey.generate_form(survey_id, "working"))


@bp.get("/surveys/<survey_id>/form/notice")
@auth.login_required
def download_notice(survey_id):
    return send_document(rpc().survey.form_notice(survey_id))


# ---------------------------------------------------------------- transmission


@bp.post("/surveys/<survey_id>/transmissions")
@auth.login_required
@limit("survey-transmit", per_minute=30, key=user_key)
@heavy
def transmit(survey_id):
    """« Envoyer » (multipart ``file``; header ``Idempotency-Key`` optional):
    201 when recorded, 200 when the same transmission was already recorded."""
    key = request.headers.get("Idempotency-Key") or None
    file = uploads.read_survey_file()
    # one RPC: survey checks, has files check and store the bytes, then checks
    # the form with them in hand (survey.transmit)
    upload = {"name": file.name, "content_b64": base64.b64encode(file.content).decode()}
    # the submitter from the token: survey records it without asking identity
    result = rpc(HEAVY_TIMEOUT).survey.transmit(survey_id, upload, key, g.get("submitter"))
    _transmission_links(survey_id, [result])
    return jsonify(result), 201 if result.get("status") == "recorded" else 200


@bp.get("/surveys/<survey_id>/transmissions")
@auth.login_required
def list_transmissions(survey_id):
    """« Liste des fichiers transmis », each with its ``download_url``."""
    return jsonify(
        {"items": _transmission_links(survey_id, rpc().survey.list_transmissions(survey_id))}
    )


@bp.get("/surveys/<survey_id>/transmissions/<transmission_id>/file")
@auth.login_required
def download_transmission(survey_id, transmission_id):
    """« Téléchargement » of a transmitted file."""
    found = rpc().survey.get_transmission(survey_id, transmission_id)
    return send_stored_file(rpc(HEAVY_TIMEOUT).files.get_file(found["file_id"]))


@bp.get("/surveys/<survey_id>/transmissions/<transmission_id>/values")
@auth.login_required
def transmission_values(survey_id, transmission_id):
    """The values extracted from a transmitted form."""
    return jsonify(rpc().survey.get_response_values(survey_id, transmission_id))


# ---------------------------------------------------------------- pièces à fournir


@bp.get("/surveys/<survey_id>/attachments")
@auth.login_required
def list_attachments(survey_id):
    """« Pièces à fournir », each with its ``download_url`` (« Exporter »)."""
    return jsonify(
        {"items": _attachment_links(survey_id, rpc().survey.list_attachments(survey_id))}
    )


@bp.post("/surveys/<survey_id>/attachments")
@auth.login_required
@limit("survey-attachment", per_minute=60, key=user_key)
@heavy
def add_attachment(survey_id):
    """« Ajouter » (multipart ``file``) → 201."""
    stored = uploads.store_survey_upload(rpc, survey_id, "attachment")
    added = rpc().survey.add_attachment(survey_id, stored["id"])
    return jsonify(_attachment_links(survey_id, [added])[0]), 201


@bp.put("/surveys/<survey_id>/attachments/<attachment_id>")
@auth.login_required
@limit("survey-attachment", per_minute=60, key=user_key)
@heavy
def replace_attachment(survey_id, attachment_id):
    """« Modifier » (multipart ``file``)."""
    rpc().survey.get_attachment(survey_id, attachment_id)  # 404 before storing anything
    stored = uploads.store_survey_upload(rpc, survey_id, "attachment", {"replacing": True})
    replaced = rpc().survey.replace_attachment(survey_id, attachment_id, stored["id"])
    return jsonify(_attachment_links(survey_id, [replaced])[0])


@bp.delete("/surveys/<survey_id>/attachments/<attachment_id>")
@auth.login_required
def delete_attachment(survey_id, attachment_id):
    """« Supprimer »."""
    return jsonify(rpc().survey.delete_attachment(survey_id, attachment_id))


@bp.get("/surveys/<survey_id>/attachments/<attachment_id>/file")
@auth.login_required
def export_attachment(survey_id, attachment_id):
    """« Exporter »: the document."""
    found = rpc().survey.get_attachment(survey_id, attachment_id)
    return send_stored_file(rpc(HEAVY_TIMEOUT).files.get_file(found["file_id"]))
