"""HTTP API and pages of the carte des formations (the Carif-Oref guide).

``bp`` (under ``/api/v1``): sign-in by identifier, the administrators'
accounts, campaigns and catalogue, the requests from draft to validation,
annexes, the print PDF and the reviewers' lists and exports. ``pages`` (under
``/carte``): sign-in, « Liste de vos demandes » and the print view, in HTML.

Views stay thin: parse, one or two RPCs, shape the response. The services
authorise (identity for accounts, carte for everything else); error codes are
theirs (see the OpenAPI document). Bytes reach the files service once: the
gateway stores uploads as the ``system`` caller after carte has said the
caller may add them, and carte reads them back the same way.
"""

from __future__ import annotations

import base64
import re
import urllib.parse

from flask import Blueprint, Response, current_app, g, jsonify, redirect, request

from gateway import auth, ratelimit
from gateway.errors import current_request_id, json_body
from gateway.files import content_disposition
from gateway.ratelimit import client_ip, limit
from gateway.rpc import lend, pool_for, rpc
from kit.context import AGENCY_ADMIN, CARTE_ADMIN, CARTE_REVIEWER, SYSTEM, Caller
from kit.errors import Forbidden, InvalidInput, ServiceError

bp = Blueprint("carte_api", __name__)
pages = Blueprint("carte_pages", __name__)

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
FILTERS = ("academy", "department", "measure", "diploma", "uai", "campaign_id")
# who lands on the reviewers' list rather than « Liste de vos demandes »
REVIEWING_ROLES = {CARTE_REVIEWER, CARTE_ADMIN, AGENCY_ADMIN}


# ---------------------------------------------------------------- helpers


def _system():
    """A client whose calls run as ``system`` (uploads carte has authorised)."""
    caller = Caller(user_id=g.caller.user_id, roles=(SYSTEM,), request_id=current_request_id())
    return lend(pool_for(current_app._get_current_object()), caller)


def _one_error(field: str, code: str, message: str) -> InvalidInput:
    """One field's error, its message also the problem's title."""
    return InvalidInput.fields({field: [message]}, code, message)


def _upload(field: str = "file"):
    """(name, mimetype, bytes) of the one uploaded file, at most 10 MB."""
    upload = request.files.get(field)
    if upload is None or not upload.filename:
        raise _one_error(field, "carte.file_missing", "Joignez un fichier.")
    content = upload.stream.read(MAX_UPLOAD_BYTES + 1)
    if len(content) > MAX_UPLOAD_BYTES:
        raise _one_error(field, "files.too_large", f"« {upload.filename[:100]} » dépasse 10 Mo.")
    return upload.filename, upload.mimetype or "application/octet-stream", content


def _document(result: dict, inline: bool = False) -> Response:
    response = Response(base64.b64decode(result["content_b64"]), mimetype=result["content_type"])
    disposition = content_disposition(result.get("name", ""))
    if inline:
        disposition = "inline" + disposition[len("attachment") :]
    response.headers["Content-Disposition"] = disposition
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    return response


def _filters() -> dict:
    return {key: request.args.get(key) for key in FILTERS if request.args.get(key)}


def is_admin() -> bool:
    """The platform's administrators (agency staff, carte ``admin`` accounts)."""
    caller = g.get("caller")
    return bool(caller and caller.authenticated and {AGENCY_ADMIN, CARTE_ADMIN} & set(caller.roles))


def field_errors(exc: ServiceError) -> dict:
    """A service error's per-field messages ({} when it has none)."""
    fields = exc.details.get("fields") if isinstance(exc.details, dict) else None
    return fields if isinstance(fields, dict) else {}


def _admin_only() -> None:
    """Early refusal before bytes travel; the services check again."""
    if not is_admin():
        raise Forbidden(
            "forbidden.carte_admin_only", "Réservé aux administrateurs de la carte des formations."
        )


def _identifier_key() -> str:
    body = request.get_json(silent=True) if request.is_json else request.form
    value = (body or {}).get("identifier") if hasattr(body or {}, "get") else None
    return str(value or "").strip().upper()[:32]


# ---------------------------------------------------------------- accounts


@bp.post("/carte/sessions")
@limit("carte-signin", per_minute=20, key=client_ip)
def sign_in():
    """{identifier, password} → 201 {token, expires_at, account, signed_in_as}; sets the cookie."""
    body = json_body()
    ratelimit.check("carte-signin-identifier", _identifier_key(), per_minute=10)
    result = rpc().identity.carte_authenticate(
        body.get("identifier"), body.get("password"), client_ip()
    )
    token = auth.issue_token(result["session_id"], result["caller"])
    account = result["user"]
    response = jsonify(
        {
            "token": token,
            "expires_at": result["expires_at"],
            "account": account,
            "signed_in_as": account["signed_in_as"],
        }
    )
    auth.set_session_cookie(response, token)
    return response, 201


@bp.post("/carte/password-resets")
@limit("carte-reset", per_minute=5, key=client_ip)
def request_reset():
    """« Mot de passe perdu » {identifier} → 202, whatever the identifier."""
    return jsonify(rpc().identity.carte_request_password_reset(json_body().get("identifier"))), 202


@bp.get("/carte/me")
@auth.login_required
def me():
    """The signed-in account and « Vous êtes connecté en tant que … »."""
    return jsonify(rpc().identity.get_carte_me())


@bp.get("/carte/accounts")
@auth.login_required
def list_accounts():
    return jsonify(
        {
            "items": rpc().identity.list_carte_accounts(
                request.args.get("kind"), request.args.get("q")
            )
        }
    )


@bp.post("/carte/accounts")
@auth.login_required
def create_account():
    """{kind, identifier, label, contact_email, member_uais, referent_uai, scope}
    → 201 {account, password}: the issued password is shown once."""
    return jsonify(rpc().identity.create_carte_account(json_body())), 201


@bp.get("/carte/accounts/<user_id>")
@auth.login_required
def get_account(user_id):
    return jsonify(rpc().identity.get_carte_account(user_id))


@bp.patch("/carte/accounts/<user_id>")
@auth.login_required
def update_account(user_id):
    return jsonify(rpc().identity.update_carte_account(user_id, json_body()))


@bp.post("/carte/accounts/<user_id>/password")
@auth.login_required
def regenerate_password(user_id):
    return jsonify(rpc().identity.regenerate_carte_password(user_id))


# ---------------------------------------------------------------- campaigns


@bp.get("/carte/campaigns")
@auth.login_required
def list_campaigns():
    return jsonify({"items": rpc().carte.list_campaigns()})


@bp.post("/carte/campaigns")
@auth.login_required
def create_campaign():
    """{school_year, opens_on, closes_on} → 201."""
    return jsonify(rpc().carte.create_campaign(json_body())), 201


@bp.get("/carte/campaigns/current")
@auth.login_required
def current_campaign():
    return jsonify({"campaign": rpc().carte.get_current_campaign()})


@bp.patch("/carte/campaigns/<int:campaign_id>")
@auth.login_required
def update_campaign(campaign_id):
    return jsonify(rpc().carte.update_campaign(campaign_id, json_body()))


# ---------------------------------------------------------------- catalogue


@bp.get("/carte/catalogue")
@auth.login_required
def catalogue():
    """The tree level → diploma → duration; ``q`` searches titles and codes."""
    return jsonify(rpc().carte.get_catalogue(request.args.get("q")))


def _store_catalogue(name: str, mimetype: str, content: bytes) -> dict:
    """XLSX goes through the files service's safety checks; CSV is stored as is
    (carte's reader bounds its size and rows)."""
    meta = {"kind": "catalogue", "name": name, "content_type": mimetype}
    encoded = base64.b64encode(content).decode()
    with _system() as files_rpc:
        if name.lower().endswith(".xlsx"):
            return files_rpc.files.store_xlsx(meta, encoded)
        return files_rpc.files.store_file(meta, encoded)


@bp.post("/carte/catalogue/imports")
@auth.login_required
def import_catalogue():
    """Multipart ``file`` (.xlsx or .csv) → {diplomas, variants, created,
    updated, withdrawn}; 422 carte.catalogue_invalid lists every problem."""
    return jsonify(import_uploaded_catalogue())


def import_uploaded_catalogue() -> dict:
    """The request's ``file`` checked, stored and imported (JSON route and page)."""
    _admin_only()
    name, mimetype, content = _upload()
    if not name.lower().endswith((".xlsx", ".csv")):
        raise _one_error("file", "carte.catalogue_unreadable", "Déposez un fichier .xlsx ou .csv.")
    stored = _store_catalogue(name, mimetype, content)
    try:
        return rpc(timeout=60).carte.import_catalogue(stored["id"], name)
    except ServiceError:  # refused (all or nothing): its file goes too
        with _system() as files_rpc:
            files_rpc.files.discard_file(stored["id"])
        raise


@bp.post("/carte/catalogue/reports")
@auth.login_required
@limit("carte-report", per_minute=10, key=client_ip)
def report_missing_programme():
    """{title, cfd, rncp, reference, message} → 201."""
    return jsonify(rpc().carte.report_missing_programme(json_body())), 201


@bp.get("/carte/catalogue/reports")
@auth.login_required
def list_programme_reports():
    return jsonify({"items": rpc().carte.list_programme_reports()})


# ---------------------------------------------------------------- requests


@bp.get("/carte/requests")
@auth.login_required
def dashboard():
    """« Demandes en cours de saisie » and « Demandes validées »."""
    return jsonify(rpc().carte.dashboard())


@bp.get("/carte/requests/new")
@auth.login_required
def new_request_form():
    return jsonify(rpc().carte.new_request_form())


@bp.post("/carte/requests")
@auth.login_required
def create_request():
    """The first « Sauvegarder » → 201 with the request's id."""
    return jsonify(rpc().carte.create_request(json_body())), 201


@bp.get("/carte/requests/<int:request_id>")
@auth.login_required
def get_request(request_id):
    return jsonify(rpc().carte.get_request(request_id))


@bp.put("/carte/requests/<int:request_id>")
@auth.login_required
def save_request(request_id):
    """« Sauvegarder »: the whole form (absent fields are emptied)."""
    return jsonify(rpc().carte.save_request(request_id, json_body()))


@bp.post("/carte/requests/<int:request_id>/check")
@auth.login_required
def check_request(request_id):
    """« Valider la demande »: 200 with the recap, or 422 with every error."""
    return jsonify(rpc().carte.check_request(request_id))


@bp.post("/carte/requests/<int:request_id>/confirm")
@auth.login_required
def confirm_request(request_id):
    """« Confirmer » {version}: read-only for good."""
    return jsonify(
        rpc().carte.confirm_request(request_id, json_body(required=False).get("version"))
    )


@bp.get("/carte/requests/<int:request_id>/pdf")
@auth.login_required
def request_pdf(request_id):
    return _document(rpc().carte.request_pdf(request_id), inline=True)


@bp.post("/carte/requests/<int:request_id>/annexes")
@auth.login_required
def add_annex(request_id):
    """Multipart ``file`` → 201 with the request and its annexes."""
    rpc().carte.prepare_annex(request_id)  # nothing is stored for a refused request
    name, mimetype, content = _upload()
    with _system() as files_rpc:
        stored = files_rpc.files.store_file(
            {"kind": "annex", "name": name, "content_type": mimetype},
            base64.b64encode(content).decode(),
        )
    meta = {
        "file_id": stored["id"],
        "name": stored["name"],
        "size": stored["size"],
        "content_type": stored["content_type"],
    }
    return jsonify(rpc().carte.add_annex(request_id, meta)), 201


@bp.get("/carte/requests/<int:request_id>/annexes/<int:annex_id>")
@auth.login_required
def download_annex(request_id, annex_id):
    return _document(rpc().carte.get_annex(request_id, annex_id))


@bp.delete("/carte/requests/<int:request_id>/annexes/<int:annex_id>")
@auth.login_required
def remove_annex(request_id, annex_id):
    return jsonify(rpc().carte.remove_annex(request_id, annex_id))


@bp.put("/carte/priorities")
@auth.login_required
def reorder_priorities():
    """{uai, order: [request ids, most urgent first]}."""
    body = json_body()
    return jsonify(rpc().carte.reorder_priorities(body.get("uai"), body.get("order")))


# ---------------------------------------------------------------- reviewers


@bp.get("/carte/reviews")
@auth.login_required
def reviews():
    """Validated requests of the reviewer's scope; filters academy, department,
    measure, diploma, uai, campaign_id; ``page``, ``per_page``."""
    return jsonify(
        rpc().carte.list_validated(
            _filters(), request.args.get("page", "1"), request.args.get("per_page", "50")
        )
    )


@bp.get("/carte/reviews/export.xlsx")
@auth.login_required
def export_xlsx():
    return _document(rpc(timeout=60).carte.export_validated(_filters(), "xlsx"))


@bp.get("/carte/reviews/export.csv")
@auth.login_required
def export_csv():
    return _document(rpc(timeout=60).carte.export_validated(_filters(), "csv"))


# ---------------------------------------------------------------- pages

# The carte pages' sheet (gateway/static/css), linked where the layout's body
# starts: the Content-Security-Policy allows no inline style (gateway.security).
STYLE = '<link rel="stylesheet" href="/static/css/carte.css">'

# « Vous êtes connecté en tant que … avec l'identifiant … » and « Déconnexion »,
# at the top of every page of a signed-in account (the guide's section 2)
WHO = """{% if admin %}<nav class="pages admin"><strong>Administration :</strong>
<a href="/carte/admin/comptes">Comptes</a><a href="/carte/admin/campagnes">Campagnes</a>
<a href="/carte/admin/catalogue">Catalogue</a><a href="/carte/relecture">Demandes validées</a>
</nav>{% endif %}
{% if who %}<div class="who"><span>{{ who }}</span>
<form method="post" action="/carte/deconnexion"><button type="submit">Déconnexion</button></form>
</div>{% endif %}"""


def _fr_date(value) -> str:
    """``2020-02-28`` → ``28/02/2020`` (what French readers expect)."""
    text = str(value or "")[:10]
    parts = text.split("-")
    return "/".join(reversed(parts)) if len(parts) == 3 else text


def _who() -> str:
    """The banner of pages whose own RPC does not say who is signed in."""
    try:
        return rpc().identity.get_carte_me()["signed_in_as"]
    except ServiceError:  # agency staff have no carte account: no banner
        return ""


SIGN_IN = """<form method="post" action="/carte/connexion">
<label for="identifier">Identifiant</label>
<input id="identifier" name="identifier" autocomplete="username" required value="{{ identifier }}">
<label for="password">Mot de passe</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Envoyer</button></form>
<p><a href="/carte/mot-de-passe-perdu">Mot de passe perdu ou non reçu ?</a></p>"""

FORGOT = """<form method="post"><label for="identifier">Identifiant</label>
<input id="identifier" name="identifier" required>
<button type="submit">Recevoir un lien par courriel</button></form>"""

DASHBOARD = (
    STYLE
    + WHO
    + """<p>{% if board.campaign %}Campagne : {{ board.campaign.label }} ({{ board.campaign.state_label }},
du {{ fr(board.campaign.opens_on) }} au {{ fr(board.campaign.closes_on) }}){% else %}Aucune campagne.{% endif %}</p>
{% for title, rows, note in sections %}<h2>{{ title }}</h2><p>{{ note }}</p>
<table><thead><tr><th>Id</th><th>Mesure</th><th>Diplôme</th><th>Modalité</th><th>Projet lié</th><th>Opération</th></tr></thead><tbody>
{% for r in rows %}<tr><td>{{ r.id }}</td><td>{{ r.measure }}</td><td>{{ r.diploma }}</td><td>{{ r.modality }}</td><td>{{ r.linked }}</td>
<td><a href="{% if r.editable %}/carte/demandes/{{ r.id }}{% else %}/carte/demandes/{{ r.id }}/impression{% endif %}">{{ r.operation }}</a></td></tr>
{% else %}<tr><td colspan="6">Aucune demande.</td></tr>{% endfor %}</tbody></table>
{% if loop.first and board.can_file %}<p><a href="/carte/demandes/nouvelle">Déposer une nouvelle demande</a></p>{% endif %}
{% endfor %}<p><a href="/carte/catalogue">Parcourir la liste des formations</a>
{% if board.drafts %} · <a href="/carte/priorites">Priorités de vos demandes en cours</a>{% endif %}</p>"""  # noqa: E501
)

PRINT = """<!doctype html><html lang="fr"><head><meta charset="utf-8">
<title>{{ view.title }}</title>
<link rel="stylesheet" href="/static/css/print.css">
<script src="/static/js/print.js" defer></script></head><body>
<p class="who">{{ view.signed_in_as }}</p>
<h1>{{ view.title }}</h1><p>{{ view.subtitle }}</p>
<p class="actions"><span data-print hidden><button type="button">Imprimer</button> · </span>
<a href="/api/v1/carte/requests/{{ view.request.id }}/pdf">PDF</a> · <a href="/carte/">Liste de vos demandes</a></p>
{% for s in view.sections %}<h2>{{ s.title }}</h2><dl>
{% for i in s["items"] %}<dt>{{ i.label }}</dt><dd>{{ i.value if i.value not in (None, "") else "—" }}</dd>{% endfor %}
</dl>{% endfor %}<footer><small>{{ view.footer }}</small></footer></body></html>"""  # noqa: E501


def _page(title, body="", status=200, **context):
    from gateway.web import page

    context.setdefault("admin", is_admin())
    return page(title, body, status=status, **context)


@pages.route("/connexion", methods=["GET", "POST"])
@limit("carte-web-signin", per_minute=20, key=client_ip)
def sign_in_page():
    """The guide's « Identification »: identifier and password."""
    if request.method == "GET":
        return _page("Identification", SIGN_IN, identifier="")
    identifier = request.form.get("identifier", "")
    try:
        ratelimit.check("carte-signin-identifier", _identifier_key(), per_minute=10)
        result = rpc().identity.carte_authenticate(
            identifier, request.form.get("password", ""), client_ip()
        )
    except ServiceError as exc:
        return _page(
            "Identification", SIGN_IN, status=exc.status, error=exc.message, identifier=identifier
        )
    response = redirect("/carte/")
    auth.set_session_cookie(response, auth.issue_token(result["session_id"], result["caller"]))
    return response


@pages.route("/mot-de-passe-perdu", methods=["GET", "POST"])
@limit("carte-web-forgot", per_minute=5, key=client_ip)
def forgot_page():
    if request.method == "GET":
        return _page("Mot de passe perdu", FORGOT)
    result = rpc().identity.carte_request_password_reset(request.form.get("identifier", ""))
    return _page("Mot de passe perdu", success=result["message"])


@pages.post("/deconnexion")
def sign_out_page():
    if g.caller.authenticated and g.get("session_id"):
        rpc().identity.end_session(g.session_id)
        auth.revoke_current()
    response = redirect("/carte/connexion")
    auth.clear_session_cookie(response)
    return response


@pages.get("/")
def dashboard_page():
    """« Liste de vos demandes » with the guide's two tables."""
    if not g.caller.authenticated:
        return redirect("/carte/connexion")
    if REVIEWING_ROLES & set(g.caller.roles):
        return redirect("/carte/relecture")
    board = rpc().carte.dashboard()
    sections = [
        (
            "Demandes en cours de saisie",
            board["drafts"],
            "Ces demandes ne sont consultables que par vous. Vous pouvez les modifier, "
            "puis, quand elles sont finalisées, demander leur validation.",
        ),
        (
            "Demandes validées",
            board["validated"],
            "Vous pouvez consulter ces demandes, mais vous ne pourrez pas les modifier.",
        ),
    ]
    return _page(
        "Saisie en ligne des demandes",
        DASHBOARD,
        board=board,
        sections=sections,
        who=board["signed_in_as"],
        fr=_fr_date,
    )


@pages.get("/demandes/<int:request_id>/impression")
def print_page(request_id):
    """« Consulter »: the whole request, laid out to print."""
    if not g.caller.authenticated:
        return redirect("/carte/connexion")
    from flask import render_template_string

    view = rpc().carte.print_request(request_id)
    html = render_template_string(PRINT, view=view)
    return html, 200, {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"}


# ---------------------------------------------------------------- the form (section 4)

FORM_FIELDS = (
    "concerned_uai", "training_site", "manager_name", "manager_phone", "manager_email",
    "modality", "variant_id", "measure", "linked", "linked_request_id", "priority",
    "current_capacity", "new_capacity", "first_filing", "previous_filing_year", "cp_ca_date",
    "works_needed", "works_description", "equipment_needed", "equipment_description",
    "other_impacts", "opportunity_report",
)  # fmt: skip

FORM = (
    STYLE
    + '<link rel="stylesheet" href="/static/css/carte-form.css">'
    + WHO
    + """
{% macro errs(name) %}{% if errors[name] %}<ul class="errors">{% for m in errors[name] %}<li>{{ m }}</li>{% endfor %}</ul>{% endif %}{% endmacro %}
{% macro label(name, required=False) %}<label for="{{ name }}"{% if required %} class="req"{% endif %}>{% if required %}* {% endif %}{{ labels[name] }}</label>{% endmacro %}
{% macro text(name, required=False, type="text", datalist=none) %}{{ label(name, required) }}<input id="{{ name }}" name="{{ name }}" type="{{ type }}"{% if datalist %} list="{{ datalist }}"{% endif %} value="{{ v[name] if v[name] is not none else '' }}">{{ errs(name) }}{% endmacro %}
{% macro yesno(name, required=True) %}<p class="inline"><span{% if required %} class="req"{% endif %}>{% if required %}* {% endif %}{{ labels[name] }}</span>
<label><input type="radio" name="{{ name }}" value="true" {% if v[name] is sameas true %}checked{% endif %}> Oui</label>
<label><input type="radio" name="{{ name }}" value="false" {% if v[name] is sameas false %}checked{% endif %}> Non</label></p>{{ errs(name) }}{% endmacro %}
<form method="post" action="{{ action }}">
<input type="hidden" name="version" value="{{ v.version or '' }}">
<p>{% if v.id %}Demande n° <strong>{{ v.id }}</strong>{% else %}Nouvelle demande (l'identifiant est attribué au premier enregistrement){% endif %}
— {{ school_year }}</p>
<fieldset><legend>A/ Établissement de formation</legend>
<label>{{ labels.referent_uai }}</label><input value="{{ referent or '' }}" disabled>
{{ text("concerned_uai", True, datalist="uais" if establishments else none) }}{% if establishments %}<datalist id="uais">{% for u in establishments %}<option value="{{ u }}">{% endfor %}</datalist>
{% endif %}{{ text("training_site") }}{{ text("manager_name", True) }}
{{ text("manager_phone", True, "tel") }}{{ text("manager_email", True, "email") }}</fieldset>
<fieldset><legend>B/ Informations sur la formation</legend>
<p class="inline"><span class="req">* {{ labels.modality }}</span>{% for code, name in choices.modality.items() %}
<label><input type="radio" name="modality" value="{{ code }}" {% if v.modality == code %}checked{% endif %}> {{ name }}</label>{% endfor %}</p>{{ errs("modality") }}
{{ label("variant_id", True) }}<select id="variant_id" name="variant_id"><option value="">— choisir dans l'arborescence —</option>
{% for level in catalogue.levels %}<optgroup label="{{ level.label }}">{% for d in level.diplomas %}{% for x in d.variants %}
<option value="{{ x.id }}" {% if v.variant_id == x.id %}selected{% endif %}>{{ x.label }} ({{ d.cfd }})</option>{% endfor %}{% endfor %}</optgroup>{% endfor %}
</select>{{ errs("variant_id") }}<p><small><a href="/carte/catalogue" target="_blank">Rechercher dans la liste</a> · Formation absente de la liste ? <a href="/carte/formation-manquante">Signalez-la au Carif-Oref</a>.</small></p>
<p class="inline"><span class="req">* {{ labels.measure }}</span>{% for code, name in choices.measure.items() %}
<label><input type="radio" name="measure" value="{{ code }}" {% if v.measure == code %}checked{% endif %}> {{ name }}</label>{% endfor %}</p>{{ errs("measure") }}
{{ yesno("linked") }}{{ text("linked_request_id") }}{{ text("priority", True, "number") }}
{{ text("current_capacity", True, "number") }}{{ text("new_capacity", True, "number") }}
{{ yesno("first_filing") }}{{ text("previous_filing_year", False, "number") }}{{ text("cp_ca_date", True, "date") }}
<p class="inline"><span class="req">* {{ labels.recruitment_zones }}</span>{% for code, name in choices.recruitment_zones.items() %}
<label><input type="checkbox" name="recruitment_zones" value="{{ code }}" {% if code in (v.recruitment_zones or []) %}checked{% endif %}> {{ name }}</label>{% endfor %}</p>{{ errs("recruitment_zones") }}
<label>{{ labels.school_year }}</label><input value="{{ school_year }}" disabled></fieldset>
<fieldset><legend>Demande de travaux, d'équipements et autres incidences</legend>
{{ yesno("works_needed") }}{{ label("works_description") }}<textarea id="works_description" name="works_description">{{ v.works_description or '' }}</textarea>{{ errs("works_description") }}
{{ yesno("equipment_needed") }}{{ label("equipment_description") }}<textarea id="equipment_description" name="equipment_description">{{ v.equipment_description or '' }}</textarea>{{ errs("equipment_description") }}
{{ label("other_impacts") }}<textarea id="other_impacts" name="other_impacts">{{ v.other_impacts or '' }}</textarea>{{ errs("other_impacts") }}</fieldset>
<fieldset><legend class="req">* {{ labels.opportunity_report }} (5 000 caractères au maximum)</legend>
<textarea id="opportunity_report" name="opportunity_report" maxlength="5000">{{ v.opportunity_report or '' }}</textarea>{{ errs("opportunity_report") }}</fieldset>
<p class="actions"><button name="action" value="save">Sauvegarder</button>
{% if v.id %}<button name="action" value="validate">Valider la demande</button>{% endif %}
<a href="/carte/">Quitter (annule toutes les modifications)</a></p></form>
{% if v.id %}<fieldset><legend>Annexes</legend><ul>{% for a in v.annexes %}<li><a href="/api/v1/carte/requests/{{ v.id }}/annexes/{{ a.id }}">{{ a.name }}</a> ({{ a.size }} octets)</li>{% else %}<li>Aucune annexe.</li>{% endfor %}</ul>
<form method="post" action="/carte/demandes/{{ v.id }}/annexes" enctype="multipart/form-data">
<input type="file" name="file" required><button type="submit">Joindre</button></form></fieldset>{% endif %}"""  # noqa: E501
)

RECAP = (
    STYLE
    + WHO
    + """<p>Vérifiez votre saisie avant de confirmer : une demande validée n'est plus modifiable.</p>
{% for s in recap.sections %}<h2>{{ s.title }}</h2><table>{% for i in s["items"] %}<tr><th>{{ i.label }}</th><td>{{ i.value if i.value not in (None, "") else "—" }}</td></tr>{% endfor %}</table>{% endfor %}
<form method="post" action="/carte/demandes/{{ id }}/confirmer" class="actions"><input type="hidden" name="version" value="{{ version }}">
<button type="submit">Confirmer</button> <a href="/carte/demandes/{{ id }}">Revenir à la saisie</a></form>"""  # noqa: E501
)


def _form_data() -> dict:
    data = {key: request.form.get(key, "") for key in FORM_FIELDS}
    data["recruitment_zones"] = request.form.getlist("recruitment_zones")
    if request.form.get("version"):
        data["version"] = request.form["version"]
    return data


def _form_page(values: dict, status: int = 200, error=None, success=None, errors=None):
    blank = rpc().carte.new_request_form()
    campaign = blank["campaign"] or {}
    action = f"/carte/demandes/{values['id']}" if values.get("id") else "/carte/demandes/nouvelle"
    return _page(
        "Saisie d'une demande",
        FORM,
        status=status,
        error=error,
        success=success,
        who=blank["signed_in_as"],
        establishments=blank.get("establishments") or [],
        v=values,
        errors=errors or {},
        labels=blank["labels"],
        choices=blank["choices"],
        catalogue=rpc().carte.get_catalogue(None),
        referent=values.get("referent_uai") or blank["prefilled"]["referent_uai"],
        school_year=campaign.get("label", ""),
        action=action,
    )


def _typed_again(values: dict, data: dict) -> dict:
    """What was typed, shown back with the errors (nothing was saved)."""
    typed = dict(values, **{k: v for k, v in data.items() if k != "version"})
    for key in ("linked", "first_filing", "works_needed", "equipment_needed"):
        typed[key] = {"true": True, "false": False}.get(str(data.get(key)), None)
    variant = str(data.get("variant_id") or "")
    typed["variant_id"] = int(variant) if re.fullmatch(r"[0-9]{1,10}", variant) else None
    return typed


@pages.route("/demandes/nouvelle", methods=["GET", "POST"])
def new_request_page():
    """« Déposer une nouvelle demande »: the first « Sauvegarder » gives the id."""
    if not g.caller.authenticated:
        return redirect("/carte/connexion")
    if request.method == "GET":
        prefilled = rpc().carte.new_request_form()["prefilled"]
        return _form_page({"concerned_uai": prefilled["concerned_uai"], "recruitment_zones": []})
    data = _form_data()
    try:
        created = rpc().carte.create_request(data)
    except ServiceError as exc:
        fields = exc.details.get("fields") if isinstance(exc.details, dict) else None
        return _form_page(_typed_again({}, data), exc.status, exc.message, errors=fields)
    return redirect(f"/carte/demandes/{created['id']}?enregistree=1", code=303)


@pages.route("/demandes/<int:request_id>", methods=["GET", "POST"])
def request_page(request_id):
    """« Continuer la saisie »: Sauvegarder, Valider la demande (then the recap)."""
    if not g.caller.authenticated:
        return redirect("/carte/connexion")
    current = rpc().carte.get_request(request_id)
    if not current["editable"]:
        return redirect(f"/carte/demandes/{request_id}/impression")
    if request.method == "GET":
        saved = "Votre saisie a été enregistrée." if request.args.get("enregistree") else None
        return _form_page(current, success=saved)
    data = _form_data()
    saved = current
    try:
        saved = rpc().carte.save_request(request_id, data)
        if request.form.get("action") != "validate":
            return redirect(f"/carte/demandes/{request_id}?enregistree=1", code=303)
        checked = rpc().carte.check_request(request_id)
    except ServiceError as exc:
        fields = exc.details.get("fields") if isinstance(exc.details, dict) else None
        shown = current if exc.code != "carte.field_required" else saved
        return _form_page(_typed_again(shown, data), exc.status, exc.message, errors=fields)
    return _page(
        "Récapitulatif de la demande",
        RECAP,
        who=current.get("signed_in_as") or rpc().carte.new_request_form()["signed_in_as"],
        recap=checked["recap"],
        id=request_id,
        version=checked["version"],
    )


@pages.post("/demandes/<int:request_id>/confirmer")
def confirm_page(request_id):
    """« Confirmer »: read-only for good, back to the dashboard."""
    if not g.caller.authenticated:
        return redirect("/carte/connexion")
    rpc().carte.confirm_request(request_id, request.form.get("version"))
    return redirect("/carte/", code=303)


@pages.post("/demandes/<int:request_id>/annexes")
def annex_page(request_id):
    if not g.caller.authenticated:
        return redirect("/carte/connexion")
    add_annex(request_id)
    return redirect(f"/carte/demandes/{request_id}", code=303)


MISSING = (
    STYLE
    + WHO
    + """<p>Avant de la signaler, assurez-vous de l'existence de la formation (arrêté de
création au Journal officiel) et relevez ses codes : le Carif-Oref l'intégrera à la liste.</p>
{% macro errs(name) %}{% if errors[name] %}<ul class="errors">{% for m in errors[name] %}<li>{{ m }}</li>{% endfor %}</ul>{% endif %}{% endmacro %}
<form method="post"><label for="title">Intitulé de la formation</label>
<input id="title" name="title" required maxlength="200" value="{{ form.title }}">{{ errs("title") }}
<label for="cfd">Code diplôme</label><input id="cfd" name="cfd" value="{{ form.cfd }}">{{ errs("cfd") }}
<label for="rncp">Code RNCP</label><input id="rncp" name="rncp" value="{{ form.rncp }}">{{ errs("rncp") }}
<label for="reference">Arrêté de création (Journal officiel)</label>
<input id="reference" name="reference" value="{{ form.reference }}">{{ errs("reference") }}
<label for="message">Message</label>
<textarea id="message" name="message" maxlength="2000">{{ form.message }}</textarea>{{ errs("message") }}
<button type="submit">Envoyer au Carif-Oref</button> <a href="/carte/">Retour</a></form>"""  # noqa: E501
)


@pages.route("/formation-manquante", methods=["GET", "POST"])
@limit("carte-web-report", per_minute=10, key=client_ip)
def missing_programme_page():
    """The contact form for a programme missing from the catalogue."""
    if not g.caller.authenticated:
        return redirect("/carte/connexion")
    keys = ("title", "cfd", "rncp", "reference", "message")
    form = {key: request.form.get(key, "") for key in keys}
    who = _who()
    if request.method == "GET":
        return _page("Formation absente de la liste", MISSING, form=form, errors={}, who=who)
    try:
        result = rpc().carte.report_missing_programme(form)
    except ServiceError as exc:
        fields = exc.details.get("fields") if isinstance(exc.details, dict) else None
        return _page(
            "Formation absente de la liste",
            MISSING,
            status=exc.status,
            error=exc.message,
            form=form,
            errors=fields or {},
            who=who,
        )
    return _page(
        "Formation absente de la liste",
        STYLE + WHO + '<p><a href="/carte/">Retour à la liste de vos demandes</a></p>',
        success=result["message"],
        who=who,
    )


# ---------------------------------------------------------------- reviewers and catalogue pages

REVIEWS = (
    STYLE
    + WHO
    + """<p>{% if board.campaign %}Campagne : {{ board.campaign.label }} ({{ board.campaign.state_label }}).
{% else %}Aucune campagne.{% endif %} Demandes validées de votre périmètre, les plus récentes d'abord.</p>
{% macro errs(name) %}{% if errors[name] %}<ul class="errors">{% for m in errors[name] %}<li>{{ m }}</li>{% endfor %}</ul>{% endif %}{% endmacro %}
<form method="get" class="filters">
<div><label for="academy">Académie</label><select id="academy" name="academy"><option value="">Toutes</option>
{% for code, name in choices.academy.items() %}<option value="{{ code }}" {% if f.academy == code %}selected{% endif %}>{{ name }}</option>{% endfor %}</select>{{ errs("academy") }}</div>
<div><label for="department">Département</label><input id="department" name="department" value="{{ f.department or '' }}" placeholder="ex. 31">{{ errs("department") }}</div>
<div><label for="measure">Mesure</label><select id="measure" name="measure"><option value="">Toutes</option>
{% for code, name in choices.measure.items() %}<option value="{{ code }}" {% if f.measure == code %}selected{% endif %}>{{ name }}</option>{% endfor %}</select>{{ errs("measure") }}</div>
<div><label for="diploma">Diplôme (code diplôme)</label><input id="diploma" name="diploma" value="{{ f.diploma or '' }}" placeholder="ex. 50023418">{{ errs("diploma") }}</div>
<div><label for="uai">Établissement (code UAI)</label><input id="uai" name="uai" value="{{ f.uai or '' }}" placeholder="ex. 0311234T">{{ errs("uai") }}</div>
<p><button type="submit">Filtrer</button> <a href="/carte/relecture">Effacer les filtres</a></p></form>
<p><strong>{{ board.total }}</strong> demande{{ "s" if board.total != 1 }} validée{{ "s" if board.total != 1 }}.
Exporter : <a href="/api/v1/carte/reviews/export.xlsx{{ query }}">tableur (XLSX)</a> · <a href="/api/v1/carte/reviews/export.csv{{ query }}">CSV</a></p>
<table><thead><tr><th>Id</th><th>Établissement</th><th>Académie</th><th>Dépt</th><th>Mesure</th><th>Diplôme</th><th>Modalité</th><th>Capacité</th><th>Validée le</th><th>Opération</th></tr></thead><tbody>
{% for r in board["items"] %}<tr><td>{{ r.id }}</td><td>{{ r.concerned_uai }}</td><td>{{ r.academy_label or "" }}</td><td>{{ r.department or "" }}</td>
<td>{{ r.measure_label or "" }}</td><td>{{ r.diploma.label if r.diploma else "" }}</td><td>{{ r.modality or "" }}</td>
<td>{{ r.current_capacity }} → {{ r.new_capacity }}</td><td>{{ fr(r.validated_at) }}</td>
<td><a href="/carte/demandes/{{ r.id }}/impression">Consulter</a></td></tr>
{% else %}<tr><td colspan="10">Aucune demande validée ne correspond.</td></tr>{% endfor %}</tbody></table>
<nav class="pages">{% if previous %}<a href="{{ previous }}">← Page précédente</a>{% endif %}
{% if next %}<a href="{{ next }}">Page suivante →</a>{% endif %}</nav>"""  # noqa: E501
)


def _page_link(filters: dict, page: int) -> str:
    return "/carte/relecture?" + urllib.parse.urlencode(dict(filters, page=page))


@pages.get("/relecture")
def reviews_page():
    """Reviewers (Région, académies, DRAAF) and administrators: the validated
    requests of their scope, filtered, paged by 50, with the exports."""
    if not g.caller.authenticated:
        return redirect("/carte/connexion")
    filters = _filters()
    page_number = request.args.get("page", "1")
    errors, status, error = {}, 200, None
    try:
        board = rpc().carte.list_validated(filters, page_number, "50")
    except InvalidInput as exc:
        errors = exc.details.get("fields", {}) if isinstance(exc.details, dict) else {}
        status, error = exc.status, exc.message
        board = rpc().carte.list_validated({}, "1", "1")
        board.update(items=[], total=0, page=1)
    pages_count = -(-board["total"] // board["per_page"]) if board["total"] else 1
    return _page(
        "Demandes validées",
        REVIEWS,
        status=status,
        error=error,
        errors=errors,
        board=board,
        choices=board.get("choices") or {"academy": {}, "measure": {}},
        f=filters,
        who=board.get("signed_in_as", ""),
        fr=_fr_date,
        query="?" + urllib.parse.urlencode(filters) if filters else "",
        previous=_page_link(filters, board["page"] - 1) if board["page"] > 1 else None,
        next=_page_link(filters, board["page"] + 1) if board["page"] < pages_count else None,
    )


CATALOGUE = (
    STYLE
    + WHO
    + """<form method="get"><label for="q">Rechercher (intitulé, code diplôme ou RNCP)</label>
<input id="q" name="q" value="{{ q }}" maxlength="100" placeholder="ex. ébéniste, 50023418, RNCP35282">
<button type="submit">Rechercher</button>{% if q %} <a href="/carte/catalogue">Toute la liste</a>{% endif %}</form>
<p>{{ tree.variant_count }} formation{{ "s" if tree.variant_count != 1 }}{% if q %} pour « {{ q }} »{% endif %}.</p>
{% for level in tree.levels %}<h2>{{ level.label }}</h2><table><thead><tr><th>Diplôme</th><th>Code diplôme</th><th>RNCP</th><th>Durées</th></tr></thead><tbody>
{% for d in level.diplomas %}<tr><td>{{ d.title }}</td><td>{{ d.cfd }}</td><td>{{ d.rncp or "" }}</td>
<td>{% for v in d.variants %}{{ v.label }}{% if not loop.last %}<br>{% endif %}{% endfor %}</td></tr>{% endfor %}</tbody></table>
{% else %}<p>Aucune formation ne correspond.</p>{% endfor %}
<p>Formation absente de la liste ? <a href="/carte/formation-manquante">Signalez-la au Carif-Oref</a>. · <a href="/carte/">Retour</a></p>"""  # noqa: E501
)


@pages.get("/catalogue")
def catalogue_page():
    """The diploma catalogue as a tree (level → diploma → durations), searchable."""
    if not g.caller.authenticated:
        return redirect("/carte/connexion")
    query = request.args.get("q", "")[:100]
    tree = rpc().carte.get_catalogue(query or None)
    return _page("Liste des formations", CATALOGUE, tree=tree, q=query, who=_who())
