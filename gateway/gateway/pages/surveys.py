"""HTML pages of section II of the Karoussel guide, for organisations:
« Enquêtes en ligne » (/enquetes), « Valeurs à renseigner »
(/enquetes/<id>/donnees), « Pièces à fournir » (/enquetes/<id>/pieces),
« Envoyer une enquête » (/transmission) and « Statut des enquêtes »
(/statuts, /statuts/<id>).

They call the same RPCs as the JSON API (``gateway.api.survey``) and share
its heavy-work bound; uploads are read, stored and documents sent by
``gateway.uploads``, as in the API. Forms POST with the session cookie
(SameSite=Lax; cross-site posts are refused by ``gateway.security``). A service's refusal is shown on the page
(its French message, and every problem with its sheet, row and column):
never raw JSON. Downloads that cannot fail in a way a user can fix (a file
already stored) link to the API's own routes, which read the same cookie.
The markup is in ``gateway/templates/surveys/``.
"""

from __future__ import annotations

from flask import Blueprint, g, redirect, request, url_for

from gateway import ratelimit
from gateway.api.survey import HEAVY_TIMEOUT, heavy, user_key
from gateway.pages import template_source
from gateway.rpc import rpc
from gateway.uploads import send_document, store_survey_upload
from gateway.web import page
from kit.errors import InvalidInput, NotFound, ServiceError

bp = Blueprint("survey_pages", __name__)

STATUS_ICONS = {"not_downloaded": "○", "downloaded": "⬇", "submitted": "✔"}

# Where the security checks read these pages' markup (the template's own text).
SURVEYS = template_source("surveys/list.html")

CERT_COLUMNS = [
    ("code", "Code Diplôme"),
    ("title", "Intitulé"),
    ("rncp", "Code RNCP"),
    ("level", "Niveau 2019"),
    ("type", "Type"),
    ("establishments", "Nombre d'établissements"),
]

DOWNLOADS = {"formulaire": "official", "version-de-travail": "working", "notice": "notice"}


# ---------------------------------------------------------------- helpers


def problems(exc: ServiceError) -> list[str]:
    """Every problem a refusal names: spreadsheet problems (sheet, row,
    column), what is missing, or per-field messages."""
    details = exc.details if isinstance(exc.details, dict) else {}
    if details.get("problems"):
        return [str(p) for p in details["problems"]]
    if details.get("missing"):
        return [str(m) for m in details["missing"]]
    fields = details.get("fields") or {}
    return [f"{name} : {message}" for name, messages in fields.items() for message in messages]


def _render(title, template, exc: ServiceError | None = None, **context):
    if exc is None:
        return page(title, template=template, problems=[], **context)
    return page(
        title,
        template=template,
        status=exc.status,
        error=exc.message,
        problems=problems(exc),
        **context,
    )


def _signed_in():
    """None, or the redirect to the sign-in page."""
    return None if g.caller.authenticated else redirect("/connexion")


def _number(value: str):
    """Digits as a number; anything else as typed, for the service to refuse."""
    value = (value or "").strip()
    return int(value) if value.isdigit() else value


def _surveys_page(exc: ServiceError | None = None):
    filters = {k: request.args[k] for k in ("sent_from", "sent_to") if request.args.get(k)}
    try:
        items = rpc().survey.list_surveys(filters)["items"]
    except ServiceError as listing_error:
        items, exc = [], exc or listing_error
    return _render(
        "Enquêtes en ligne",
        "surveys/list.html",
        exc,
        items=items,
        sent_from=filters.get("sent_from", ""),
        sent_to=filters.get("sent_to", ""),
    )


# ---------------------------------------------------------------- « Enquêtes en ligne »


@bp.get("/enquetes")
def surveys():
    """The home's three tiles and « Enquêtes »; ``?sent_from=&sent_to=``."""
    return _signed_in() or _surveys_page()


@bp.get("/enquetes/<survey_id>/telecharger/<kind>")
def download(survey_id, kind):
    """The form, its working copy or its notice; a refusal (« données à
    renseigner » incomplete) is shown on the list."""
    if redirect_to := _signed_in():
        return redirect_to
    purpose = DOWNLOADS.get(kind)
    if purpose is None:
        return _render("Page introuvable", None, NotFound("not_found", "Page introuvable."))
    try:
        if purpose == "notice":
            return send_document(rpc().survey.form_notice(survey_id))
        generate = heavy(lambda: rpc(HEAVY_TIMEOUT).survey.generate_form(survey_id, purpose))
        return send_document(generate())
    except ServiceError as exc:
        return _surveys_page(exc)


# ---------------------------------------------------------------- « Valeurs à renseigner »


def _required_action(survey_id: str) -> str:
    """Runs the POSTed action; returns the success banner."""
    form = request.form
    action = form.get("action")
    survey = rpc().survey
    if action == "save":
        survey.save_required_data(
            survey_id,
            {
                "establishments_count": _number(form.get("establishments_count")),
                "trainings_count": _number(form.get("trainings_count")),
            },
        )
        return "Vos valeurs sont enregistrées."
    if action == "import":
        ratelimit.check("survey-import", user_key(), per_minute=30)

        def run():
            stored = store_survey_upload(rpc, survey_id, "certifications")
            return rpc(HEAVY_TIMEOUT).survey.import_certifications(survey_id, stored["id"])

        heavy(run)()
        return "Les données ont bien été importées"
    if action == "update":
        data = {field: form.get(field, "") for field, _label in CERT_COLUMNS}
        data["establishments"] = _number(data["establishments"])
        survey.update_certification(survey_id, form.get("cert_id", ""), data)
        return "La certification est modifiée."
    if action == "delete":
        survey.delete_certification(survey_id, form.get("cert_id", ""))
        return "La certification est supprimée."
    raise InvalidInput("invalid_input", "Action inconnue.")


@bp.route("/enquetes/<survey_id>/donnees", methods=["GET", "POST"])
def required_data(survey_id):
    """« Valeurs à renseigner »: the two totals (« Enregistrer »), the
    template, « Importer des données » and the certifications' table."""
    if redirect_to := _signed_in():
        return redirect_to
    exc = success = None
    if request.method == "POST":
        try:
            success = _required_action(survey_id)
        except ServiceError as refused:
            exc = refused
    try:
        data = rpc().survey.get_required_data(survey_id)
    except ServiceError as refused:
        return _render("Valeurs à renseigner", None, refused)
    if exc is None:
        return page(
            "Valeurs à renseigner",
            template="surveys/required.html",
            success=success,
            problems=[],
            data=data,
            survey_id=survey_id,
            columns=CERT_COLUMNS,
        )
    return _render(
        "Valeurs à renseigner",
        "surveys/required.html",
        exc,
        data=data,
        survey_id=survey_id,
        columns=CERT_COLUMNS,
    )


# ---------------------------------------------------------------- « Pièces à fournir »


def _attachment_action(survey_id: str) -> str:
    form = request.form
    action = form.get("action")
    attachment_id = form.get("attachment_id", "")
    if action in ("add", "replace"):
        ratelimit.check("survey-attachment", user_key(), per_minute=60)

        def run():
            if action == "add":
                stored = store_survey_upload(rpc, survey_id, "attachment")
                return rpc().survey.add_attachment(survey_id, stored["id"])
            rpc().survey.get_attachment(survey_id, attachment_id)  # 404 before storing
            stored = store_survey_upload(rpc, survey_id, "attachment", {"replacing": True})
            return rpc().survey.replace_attachment(survey_id, attachment_id, stored["id"])

        done = heavy(run)()
        return f"« {done['name']} » est enregistrée."
    if action == "delete":
        rpc().survey.delete_attachment(survey_id, attachment_id)
        return "La pièce est supprimée."
    raise InvalidInput("invalid_input", "Action inconnue.")


@bp.route("/enquetes/<survey_id>/pieces", methods=["GET", "POST"])
def attachments(survey_id):
    """« Pièces à fournir »: Modifier, Exporter, Supprimer, Ajouter."""
    if redirect_to := _signed_in():
        return redirect_to
    exc = success = None
    if request.method == "POST":
        try:
            success = _attachment_action(survey_id)
        except ServiceError as refused:
            exc = refused
    try:
        items = rpc().survey.list_attachments(survey_id)
    except ServiceError as refused:
        return _render("Pièces à fournir", None, refused)
    if exc is None:
        return page(
            "Pièces à fournir",
            template="surveys/attachments.html",
            success=success,
            problems=[],
            items=items,
            survey_id=survey_id,
        )
    return _render(
        "Pièces à fournir", "surveys/attachments.html", exc, items=items, survey_id=survey_id
    )


# ---------------------------------------------------------------- « Envoyer une enquête »


def _transmit(survey_id: str) -> dict:
    ratelimit.check("survey-transmit", user_key(), per_minute=30)

    def run():
        stored = store_survey_upload(rpc, survey_id, "response")
        return rpc(HEAVY_TIMEOUT).survey.submit_response(survey_id, stored["id"], None)

    return heavy(run)()


@bp.route("/transmission", methods=["GET", "POST"])
def transmission():
    """« Envoyer une enquête »: the survey, the filled form, « Envoyer »;
    account managers only (the service checks it too)."""
    if redirect_to := _signed_in():
        return redirect_to
    manager = g.caller.is_manager
    chosen = request.form.get("survey_id") or request.args.get("enquete", "")
    exc = success = None
    if request.method == "POST" and manager:
        try:
            sent = _transmit(chosen)
            success = f"Votre enquête est déposée : fichier enregistré « {sent['file_name']} »."
        except ServiceError as refused:
            exc = refused
    try:
        items = rpc().survey.list_surveys({})["items"] if manager else []
    except ServiceError as refused:
        items, exc = [], exc or refused
    context = {"items": items, "manager": manager, "chosen": chosen}
    if exc is None:
        return page(
            "Envoyer une enquête",
            template="surveys/transmit.html",
            success=success,
            problems=[],
            **context,
        )
    return _render("Envoyer une enquête", "surveys/transmit.html", exc, **context)


# ---------------------------------------------------------------- « Statut des enquêtes »


@bp.get("/statuts")
def statuses():
    """« Statut des enquêtes »: ``?blocked=true|false&page=``."""
    if redirect_to := _signed_in():
        return redirect_to
    blocked = request.args.get("blocked", "")
    filters = {"blocked": blocked, "page": request.args.get("page") or "1"}

    def link(number: int) -> str:
        return url_for("survey_pages.statuses", blocked=blocked or None, page=number)

    context = {"blocked": blocked, "icons": STATUS_ICONS, "link": link}
    try:
        result = rpc().survey.list_statuses({k: v for k, v in filters.items() if v})
    except ServiceError as exc:
        empty = {"items": [], "page": 1, "pages": 1, "label": ""}
        return _render("Statut des enquêtes", "surveys/statuses.html", exc, result=empty, **context)
    return _render("Statut des enquêtes", "surveys/statuses.html", result=result, **context)


@bp.get("/statuts/<survey_id>")
def survey_status(survey_id):
    """A survey's « Liste des fichiers transmis »."""
    if redirect_to := _signed_in():
        return redirect_to
    try:
        survey = rpc().survey.get_survey(survey_id)
    except ServiceError as exc:
        return _render("Statut de l'enquête", None, exc)
    return _render(survey["name"], "surveys/survey.html", s=survey, icons=STATUS_ICONS)
