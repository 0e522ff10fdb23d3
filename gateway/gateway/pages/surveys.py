"""HTML pages of section II of the Karoussel guide, for organisations:
« Enquêtes en ligne » (/enquetes), « Valeurs à renseigner »
(/enquetes/<id>/donnees), « Pièces à fournir » (/enquetes/<id>/pieces),
« Envoyer une enquête » (/transmission) and « Statut des enquêtes »
(/statuts, /statuts/<id>).

They call the same RPCs as the JSON API (``gateway.api.survey``) and share
its upload checks, heavy-work bound and document sending. Forms POST with
the session cookie (SameSite=Lax; cross-site posts are refused by
``gateway.security``). A service's refusal is shown on the page
(its French message, and every problem with its sheet, row and column):
never raw JSON. Downloads that cannot fail in a way a user can fix (a file
already stored) link to the API's own routes, which read the same cookie.
"""

from __future__ import annotations

from flask import Blueprint, g, redirect, request, url_for

from gateway import ratelimit
from gateway.api.survey import HEAVY_TIMEOUT, heavy, send_document, store_upload, user_key
from gateway.rpc import rpc
from gateway.web import page
from kit.errors import InvalidInput, NotFound, ServiceError

bp = Blueprint("survey_pages", __name__)

STATUS_ICONS = {"not_downloaded": "○", "downloaded": "⬇", "submitted": "✔"}

# The pages' own sheet (gateway/static/css), linked where the layout's body
# starts: the Content-Security-Policy allows no inline style (gateway.security).
STYLE = '<link rel="stylesheet" href="/static/css/surveys.css">'

# what every refusal shows under its message
PROBLEMS = """{% if problems %}<ul class="errors" aria-label="Problèmes à corriger">
{% for p in problems %}<li>{{ p }}</li>{% endfor %}</ul>{% endif %}"""

TILES = """<div class="tiles">
<section><h2>Enquête en ligne</h2><p>Le menu « Enquête en ligne » permet de visualiser les
enquêtes mises en ligne, et de les télécharger.</p><p><a href="/enquetes">Accéder aux enquêtes en ligne</a></p></section>
<section><h2>Transmission enquêtes</h2><p>La transmission d'enquêtes permet d'envoyer manuellement
vos enquêtes à l'aide d'un formulaire au format xlsx.</p><p><a href="/transmission">Accéder à la transmission</a></p></section>
<section><h2>Statut des enquêtes</h2><p>Le menu « Statut des enquêtes » permet l'accès aux données
des différentes enquêtes du portail.</p><p><a href="/statuts">Accéder au statut des enquêtes</a></p></section>
</div>"""  # noqa: E501

SURVEYS = (
    STYLE
    + PROBLEMS
    + TILES
    + """<h2>Enquêtes</h2>
<form method="get" action="/enquetes" class="filters">
<div><label for="sent_from">Date de dernier envoi – Début</label>
<input id="sent_from" name="sent_from" type="date" value="{{ sent_from }}"></div>
<div><label for="sent_to">Date de dernier envoi – Fin</label>
<input id="sent_to" name="sent_to" type="date" value="{{ sent_to }}"></div>
<div><button type="submit">Appliquer</button></div></form>
<table><caption class="hint">{{ items|length }} enquête(s)</caption><thead><tr>
<th scope="col">Nom enquête</th><th scope="col">Détails</th><th scope="col">Formulaire</th>
<th scope="col">Organisme</th><th scope="col">Organisme parent</th><th scope="col">Direction</th>
<th scope="col">Date mise en ligne</th><th scope="col">Date retour</th><th scope="col">Date clôture</th>
<th scope="col">Date de dernier envoi</th><th scope="col">Statut</th>
<th scope="col">Données à renseigner</th><th scope="col">Télécharger</th></tr></thead><tbody>
{% for s in items %}<tr><td>{{ s.name }}</td><td>{{ s.details }}</td><td>{{ s.form }}</td>
<td>{{ s.organisation or "" }}</td><td>{{ s.parent or "" }}</td><td>{{ s.direction }}</td>
<td>{{ fr(s.online_on) }}</td><td>{{ fr(s.return_due_on) }}</td><td>{{ fr(s.closes_on) }}</td>
<td>{{ fr_time(s.last_sent_at) }}</td><td>{{ s.status_label }}{% if s.blocked %} (bloquée){% endif %}</td>
<td><a href="/enquetes/{{ s.id }}/donnees">Données à renseigner</a><br>
<a href="/enquetes/{{ s.id }}/pieces">Pièces à fournir</a></td>
<td><a href="/enquetes/{{ s.id }}/telecharger/formulaire">Formulaire</a><br>
<a href="/enquetes/{{ s.id }}/telecharger/version-de-travail">Version de travail</a><br>
<a href="/enquetes/{{ s.id }}/telecharger/notice">Notice</a></td></tr>
{% else %}<tr><td colspan="13">Aucune enquête.</td></tr>{% endfor %}</tbody></table>"""  # noqa: E501
)

REQUIRED = (
    STYLE
    + PROBLEMS
    + """<form method="post" id="counts">
<input type="hidden" name="action" value="save">
<label for="establishments_count">Nombre d'établissements total *</label>
<input id="establishments_count" name="establishments_count" inputmode="numeric" required
 value="{{ data.establishments_count if data.establishments_count is not none else '' }}">
<label for="trainings_count">Nombre de formations total *</label>
<input id="trainings_count" name="trainings_count" inputmode="numeric" required
 value="{{ data.trainings_count if data.trainings_count is not none else '' }}">
<button type="submit">Enregistrer</button> <a href="/enquetes">Retour</a></form>
<h2>Fichier actuel</h2>
<p><a href="/api/v1/survey-templates/certifications">{{ data.template_name or "Liste-certifications.xlsx" }}</a>
<span class="hint">(la liste à compléter)</span></p>
{% if data.certifications_file %}<p>Dernier fichier importé :
<a href="/api/v1/surveys/{{ survey_id }}/certifications/file">{{ data.certifications_file.name }}</a></p>{% endif %}
<h2>Importer des données</h2>
<form method="post" enctype="multipart/form-data">
<input type="hidden" name="action" value="import">
<label for="file">Fichier de certifications</label>
<input id="file" name="file" type="file" accept=".xlsx" aria-describedby="format">
<p id="format" class="hint">Format accepté : .xlsx</p>
<button type="submit">Importer</button></form>
{% if data.missing %}<p>Avant de télécharger l'enquête, il manque :</p><ul>
{% for m in data.missing %}<li>{{ m }}</li>{% endfor %}</ul>{% endif %}
<h2>Certifications</h2>
<table><thead><tr><th scope="col">Code Diplôme</th><th scope="col">Intitulé</th>
<th scope="col">Code RNCP</th><th scope="col">Niveau 2019</th><th scope="col">Type</th>
<th scope="col">Nombre d'établissements</th><th scope="col">Actions</th></tr></thead><tbody>
{% for c in data.certifications %}<tr>
{% for field, label in columns %}<td><input form="cert-{{ c.id }}" name="{{ field }}"
 aria-label="{{ label }} ({{ c.code }})" value="{{ c[field] if c[field] is not none else '' }}"></td>{% endfor %}
<td><form method="post" id="cert-{{ c.id }}" class="inline"><input type="hidden" name="action" value="update">
<input type="hidden" name="cert_id" value="{{ c.id }}"><button type="submit">Modifier</button></form>
<form method="post" class="inline"><input type="hidden" name="action" value="delete">
<input type="hidden" name="cert_id" value="{{ c.id }}"><button type="submit">Supprimer</button></form></td></tr>
{% else %}<tr><td colspan="7">Aucune certification : importez la liste.</td></tr>{% endfor %}
</tbody></table>"""  # noqa: E501
)

CERT_COLUMNS = [
    ("code", "Code Diplôme"),
    ("title", "Intitulé"),
    ("rncp", "Code RNCP"),
    ("level", "Niveau 2019"),
    ("type", "Type"),
    ("establishments", "Nombre d'établissements"),
]

ATTACHMENTS = (
    STYLE
    + PROBLEMS
    + """<table><thead><tr><th scope="col">Pièces à fournir</th><th scope="col">Modifier</th>
<th scope="col">Exporter</th><th scope="col">Supprimer</th></tr></thead><tbody>
{% for a in items %}<tr><td>{{ a.name }}</td>
<td><form method="post" enctype="multipart/form-data" class="inline">
<input type="hidden" name="action" value="replace"><input type="hidden" name="attachment_id" value="{{ a.id }}">
<input name="file" type="file" aria-label="Nouveau fichier pour {{ a.name }}" required>
<button type="submit">Modifier</button></form></td>
<td><a href="/api/v1/surveys/{{ survey_id }}/attachments/{{ a.id }}/file">Exporter</a></td>
<td><form method="post" class="inline"><input type="hidden" name="action" value="delete">
<input type="hidden" name="attachment_id" value="{{ a.id }}"><button type="submit">Supprimer</button></form></td></tr>
{% else %}<tr><td colspan="4">Aucune pièce.</td></tr>{% endfor %}</tbody></table>
<form method="post" enctype="multipart/form-data"><input type="hidden" name="action" value="add">
<label for="file">Nouvelle pièce</label><input id="file" name="file" type="file" required>
<button type="submit">Ajouter</button> <a href="/enquetes">Retour</a></form>"""  # noqa: E501
)

TRANSMIT = (
    STYLE
    + PROBLEMS
    + """{% if not manager %}<p class="error" role="note">Seuls les gestionnaires de compte peuvent
déposer le formulaire d'enquête ; les autres utilisateurs peuvent le télécharger et le préparer.</p>
{% else %}<form method="post" enctype="multipart/form-data">
<label for="survey_id">Enquête</label>
<select id="survey_id" name="survey_id" required>{% for s in items %}
<option value="{{ s.id }}"{% if s.id == chosen %} selected{% endif %}>{{ s.name }} — {{ s.organisation or "" }}</option>
{% endfor %}</select>
<label for="file">Formulaire d'enquête</label>
<input id="file" name="file" type="file" accept=".xlsx" required aria-describedby="format">
<p id="format" class="hint">Format accepté : .xlsx</p>
<button type="submit">Envoyer</button> <a href="/enquetes">Annuler</a></form>
<p class="hint">Attention, le fichier Excel correspondant au formulaire d'enquête est un document
préformaté et ne peut être modifié en dehors des cas prévus.</p>{% endif %}"""  # noqa: E501
)

STATUSES = (
    STYLE
    + PROBLEMS
    + """<form method="get" action="/statuts" class="filters">
<div><label for="blocked">Filtrer par enquête bloquée/débloquée</label>
<select id="blocked" name="blocked">
<option value=""{% if not blocked %} selected{% endif %}>Toutes</option>
<option value="true"{% if blocked == "true" %} selected{% endif %}>Bloquées</option>
<option value="false"{% if blocked == "false" %} selected{% endif %}>Débloquées</option></select></div>
<div><button type="submit">Appliquer</button></div></form>
<table><thead><tr><th scope="col">#</th><th scope="col">Nom enquête</th><th scope="col">Organisme</th>
<th scope="col">Statut</th><th scope="col">Date de dernier envoi</th><th scope="col">Date de retour souhaité</th>
</tr></thead><tbody>
{% for s in result["items"] %}<tr><td>{{ s.number }}</td><td><a href="/statuts/{{ s.id }}">{{ s.name }}</a></td>
<td>{{ s.organisation or "" }}</td><td><span aria-hidden="true">{{ icons.get(s.status, "") }}</span>
Enquête {{ s.status_label }}{% if s.blocked %} (bloquée){% endif %}</td>
<td>{{ fr_time(s.last_sent_at) }}</td><td>{{ fr(s.return_due_on) }}</td></tr>
{% else %}<tr><td colspan="6">Aucune enquête.</td></tr>{% endfor %}</tbody></table>
<nav aria-label="Pagination"><p>{{ result.label }}
{% if result.page > 1 %} · <a href="{{ link(result.page - 1) }}">Page précédente</a>{% endif %}
{% if result.page < result.pages %} · <a href="{{ link(result.page + 1) }}">Page suivante</a>{% endif %}</p></nav>"""  # noqa: E501
)

SURVEY = (
    STYLE
    + """<p>{{ s.organisation or "" }} — {{ s.name }}</p>
<p>Date de dernière modification : {{ fr_time(s.updated_at) }}</p>
<p>Statut : <span aria-hidden="true">{{ icons.get(s.status, "") }}</span> Enquête {{ s.status_label }}</p>
<h2>Liste des fichiers transmis</h2>
<table><thead><tr><th scope="col">#</th><th scope="col">Fichier</th><th scope="col">Date de transmission</th>
<th scope="col">Nom</th><th scope="col">Mail</th><th scope="col">Téléchargement</th></tr></thead><tbody>
{% for t in s.transmissions %}<tr><td>{{ t.number }}</td><td>{{ t.file_name }}</td><td>{{ fr_time(t.submitted_at) }}</td>
<td>{{ t.submitter_name }}</td><td>{{ t.submitter_email }}</td>
<td><a href="/api/v1/surveys/{{ s.id }}/transmissions/{{ t.id }}/file">Télécharger {{ t.file_name }}</a></td></tr>
{% else %}<tr><td colspan="6">Aucun fichier transmis.</td></tr>{% endfor %}</tbody></table>
<p><a href="/statuts">Retour</a></p>"""  # noqa: E501
)

DOWNLOADS = {"formulaire": "official", "version-de-travail": "working", "notice": "notice"}


# ---------------------------------------------------------------- helpers


def fr_date(value) -> str:
    """``2021-07-15`` → ``15/07/2021``."""
    text = str(value or "")[:10]
    parts = text.split("-")
    return "/".join(reversed(parts)) if len(parts) == 3 else text


def fr_time(value) -> str:
    """An ISO instant → ``07/12/2020 12:26:04``, in France's time."""
    if not value:
        return ""
    import datetime as dt
    from zoneinfo import ZoneInfo

    try:
        at = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if at.tzinfo is not None:
        at = at.astimezone(ZoneInfo("Europe/Paris"))
    return at.strftime("%d/%m/%Y %H:%M:%S")


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


def _render(title, body, exc: ServiceError | None = None, **context):
    if exc is None:
        return page(title, body, fr=fr_date, fr_time=fr_time, problems=[], **context)
    return page(
        title,
        body,
        status=exc.status,
        error=exc.message,
        fr=fr_date,
        fr_time=fr_time,
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
        SURVEYS,
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
        return _render("Page introuvable", "", NotFound("not_found", "Page introuvable."))
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
            stored = store_upload(survey_id, "certifications")
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
        return _render("Valeurs à renseigner", "", refused)
    if exc is None:
        return page(
            "Valeurs à renseigner",
            REQUIRED,
            success=success,
            problems=[],
            data=data,
            survey_id=survey_id,
            columns=CERT_COLUMNS,
        )
    return _render(
        "Valeurs à renseigner", REQUIRED, exc, data=data, survey_id=survey_id, columns=CERT_COLUMNS
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
                stored = store_upload(survey_id, "attachment")
                return rpc().survey.add_attachment(survey_id, stored["id"])
            rpc().survey.get_attachment(survey_id, attachment_id)  # 404 before storing
            stored = store_upload(survey_id, "attachment", {"replacing": True})
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
        return _render("Pièces à fournir", "", refused)
    if exc is None:
        return page(
            "Pièces à fournir",
            ATTACHMENTS,
            success=success,
            problems=[],
            items=items,
            survey_id=survey_id,
        )
    return _render("Pièces à fournir", ATTACHMENTS, exc, items=items, survey_id=survey_id)


# ---------------------------------------------------------------- « Envoyer une enquête »


def _transmit(survey_id: str) -> dict:
    ratelimit.check("survey-transmit", user_key(), per_minute=30)

    def run():
        stored = store_upload(survey_id, "response")
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
        return page("Envoyer une enquête", TRANSMIT, success=success, problems=[], **context)
    return _render("Envoyer une enquête", TRANSMIT, exc, **context)


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
        return _render("Statut des enquêtes", STATUSES, exc, result=empty, **context)
    return _render("Statut des enquêtes", STATUSES, result=result, **context)


@bp.get("/statuts/<survey_id>")
def survey_status(survey_id):
    """A survey's « Liste des fichiers transmis »."""
    if redirect_to := _signed_in():
        return redirect_to
    try:
        survey = rpc().survey.get_survey(survey_id)
    except ServiceError as exc:
        return _render("Statut de l'enquête", "", exc)
    return _render(survey["name"], SURVEY, s=survey, icons=STATUS_ICONS)
