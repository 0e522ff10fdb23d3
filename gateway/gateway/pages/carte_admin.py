"""The carte administrator's pages (Carif-Oref) and the filers' « Priorités ».

``/carte/admin/comptes``: the accounts, a form to create one (the issued
password is shown once) and « Régénérer le mot de passe ``.
``/carte/admin/campagnes``: the campaigns and a form to open one.
``/carte/admin/catalogue``: the catalogue import (.xlsx/.csv, every problem
with its row and column) and the missing programmes reported.
``/carte/priorites``: a filer reorders the priorities of its drafts.

The same RPCs as the JSON routes of ``gateway.api.carte`` (through its module,
so its helpers and fakes apply); service errors become a page with the status,
the French message and the per-field errors.
"""

from __future__ import annotations

import re

from flask import Blueprint, g, redirect, request

from gateway.api import carte as api
from kit.errors import ServiceError

bp = Blueprint("carte_admin_pages", __name__)

KINDS = {
    "establishment": "Établissement (UAI)",
    "network": "Réseau d'établissements",
    "draaf": "DRAAF",
    "reviewer": "Relecteur (Région, académie)",
    "admin": "Administrateur",
}
SCOPES = {
    "all": "Tous (Région)",
    "montpellier": "Académie de Montpellier",
    "toulouse": "Académie de Toulouse",
    "draaf": "DRAAF",
}
ERRS = """{% macro errs(name) %}{% if errors[name] %}<ul class="errors">{% for m in errors[name] %}<li>{{ m }}</li>{% endfor %}</ul>{% endif %}{% endmacro %}"""  # noqa: E501


def _guard():
    """None when the caller is an administrator, else the redirect or 403 page."""
    if not g.caller.authenticated:
        return redirect("/carte/connexion")
    if not api.is_admin():
        return api._page(
            "Accès refusé",
            status=403,
            error="Réservé aux administrateurs de la carte des formations.",
        )
    return None


def _failure(exc: ServiceError) -> dict:
    return {"status": exc.status, "error": exc.message, "errors": api.field_errors(exc)}


# ---------------------------------------------------------------- accounts

ACCOUNTS = (
    api.STYLE
    + api.WHO
    + ERRS
    + """{% if issued %}<div class="issued"><p>Mot de passe du compte <strong>{{ issued.account.identifier }}</strong>
(communiquez-le à son titulaire ; il ne sera plus affiché) :</p>
<p><code id="issued-password">{{ issued.password }}</code></p></div>{% endif %}
<form method="get"><label for="q">Rechercher (identifiant ou nom)</label>
<input id="q" name="q" value="{{ q }}" maxlength="100"> <button type="submit">Rechercher</button></form>
<table><thead><tr><th>Type</th><th>Identifiant</th><th>Nom</th><th>Académie / périmètre</th><th>Actif</th><th>Mot de passe</th></tr></thead><tbody>
{% for a in accounts %}<tr><td>{{ a.kind_label or kinds.get(a.kind, a.kind) }}</td><td>{{ a.identifier }}</td><td>{{ a.label }}</td>
<td>{% if a.scope_label %}{{ a.scope_label }}{% elif a.member_uais %}Réseau : {{ a.member_uais|join(", ") }}{% elif a.uai %}{{ a.uai }}{% endif %}{% if a.referent_uai %} (référent {{ a.referent_uai }}){% endif %}</td>
<td>{{ "Oui" if a.active else "Non" }}</td>
<td><form method="post" action="/carte/admin/comptes/{{ a.user_id }}/mot-de-passe"><button type="submit">Régénérer</button></form></td></tr>
{% else %}<tr><td colspan="6">Aucun compte.</td></tr>{% endfor %}</tbody></table>
<h2>Créer un compte</h2>
<form method="post" action="/carte/admin/comptes">
<label for="kind">Type de compte</label><select id="kind" name="kind">{% for code, name in kinds.items() %}
<option value="{{ code }}" {% if form.kind == code %}selected{% endif %}>{{ name }}</option>{% endfor %}</select>{{ errs("kind") }}
<label for="identifier">Identifiant (code UAI pour un établissement)</label>
<input id="identifier" name="identifier" required maxlength="32" value="{{ form.identifier }}">{{ errs("identifier") }}
<label for="label">Nom</label><input id="label" name="label" required maxlength="200" value="{{ form.label }}">{{ errs("label") }}
<label for="contact_email">Adresse e-mail de contact</label>
<input id="contact_email" name="contact_email" type="email" value="{{ form.contact_email }}">{{ errs("contact_email") }}
<label for="member_uais">Établissements membres (réseau : codes UAI séparés par des espaces ou des virgules)</label>
<textarea id="member_uais" name="member_uais">{{ form.member_uais }}</textarea>{{ errs("member_uais") }}
<label for="referent_uai">Établissement référent (réseau, DRAAF)</label>
<input id="referent_uai" name="referent_uai" value="{{ form.referent_uai }}">{{ errs("referent_uai") }}
<label for="scope">Périmètre (relecteur)</label><select id="scope" name="scope"><option value="">—</option>{% for code, name in scopes.items() %}
<option value="{{ code }}" {% if form.scope == code %}selected{% endif %}>{{ name }}</option>{% endfor %}</select>{{ errs("scope") }}
{{ errs("_") }}<button type="submit">Créer le compte</button></form>"""  # noqa: E501
)
ACCOUNT_KEYS = (
    "kind",
    "identifier",
    "label",
    "contact_email",
    "member_uais",
    "referent_uai",
    "scope",
)


def _account_data(form: dict) -> dict:
    """The form as ``create_carte_account`` expects it: only what the kind uses."""
    data = {k: form[k].strip() for k in ("kind", "identifier", "label", "contact_email")}
    kind = data["kind"]
    if kind == "network":
        data["member_uais"] = [u for u in re.split(r"[\s,;]+", form["member_uais"]) if u]
    if kind in ("network", "draaf") and form["referent_uai"].strip():
        data["referent_uai"] = form["referent_uai"].strip()
    if kind == "reviewer":
        data["scope"] = form["scope"]
    return data


def _accounts_page(form=None, issued=None, status=200, error=None, errors=None, success=None):
    query = request.args.get("q", "")[:100]
    try:
        accounts = api.rpc().identity.list_carte_accounts(None, query or None)
    except ServiceError as exc:
        accounts, status, error = [], exc.status, exc.message
    return api._page(
        "Comptes de la carte des formations",
        ACCOUNTS,
        status=status,
        error=error,
        success=success,
        who=api._who(),
        accounts=accounts,
        q=query,
        kinds=KINDS,
        scopes=SCOPES,
        form=form or dict.fromkeys(ACCOUNT_KEYS, "") | {"kind": "establishment"},
        errors=errors or {},
        issued=issued,
    )


@bp.route("/carte/admin/comptes", methods=["GET", "POST"])
def accounts_page():
    refused = _guard()
    if refused:
        return refused
    if request.method == "GET":
        return _accounts_page()
    form = {key: request.form.get(key, "") for key in ACCOUNT_KEYS}
    try:
        created = api.rpc().identity.create_carte_account(_account_data(form))
    except ServiceError as exc:
        return _accounts_page(form=form, **_failure(exc))
    return _accounts_page(
        issued=created, status=201, success=f"Compte {created['account']['identifier']} créé."
    )


@bp.post("/carte/admin/comptes/<user_id>/mot-de-passe")
def regenerate_page(user_id):
    refused = _guard()
    if refused:
        return refused
    try:
        issued = api.rpc().identity.regenerate_carte_password(user_id)
    except ServiceError as exc:
        return _accounts_page(**_failure(exc))
    return _accounts_page(issued=issued, success="Nouveau mot de passe émis.")


# ---------------------------------------------------------------- campaigns

CAMPAIGNS = (
    api.STYLE
    + api.WHO
    + ERRS
    + """<table><thead><tr><th>Campagne</th><th>Programmation</th><th>Ouverture</th><th>Clôture</th><th>État</th></tr></thead><tbody>
{% for c in campaigns %}<tr><td>{{ c.label }}</td><td>{{ c.programming_year }}</td><td>{{ fr(c.opens_on) }}</td><td>{{ fr(c.closes_on) }}</td><td>{{ c.state_label }}</td></tr>
{% else %}<tr><td colspan="5">Aucune campagne.</td></tr>{% endfor %}</tbody></table>
<h2>Créer une campagne</h2>
<form method="post"><label for="school_year">Rentrée (année)</label>
<input id="school_year" name="school_year" type="number" required value="{{ form.school_year }}">{{ errs("school_year") }}
<label for="opens_on">Ouverture de la saisie</label><input id="opens_on" name="opens_on" type="date" required value="{{ form.opens_on }}">{{ errs("opens_on") }}
<label for="closes_on">Clôture de la saisie</label><input id="closes_on" name="closes_on" type="date" required value="{{ form.closes_on }}">{{ errs("closes_on") }}
<button type="submit">Créer la campagne</button></form>"""  # noqa: E501
)


def _campaigns_page(form=None, status=200, error=None, errors=None, success=None):
    try:
        campaigns = api.rpc().carte.list_campaigns()
    except ServiceError as exc:
        campaigns, status, error = [], exc.status, exc.message
    return api._page(
        "Campagnes de la carte des formations",
        CAMPAIGNS,
        status=status,
        error=error,
        success=success,
        who=api._who(),
        campaigns=campaigns,
        form=form or {"school_year": "", "opens_on": "", "closes_on": ""},
        errors=errors or {},
        fr=api._fr_date,
    )


@bp.route("/carte/admin/campagnes", methods=["GET", "POST"])
def campaigns_page():
    refused = _guard()
    if refused:
        return refused
    if request.method == "GET":
        return _campaigns_page()
    form = {
        key: request.form.get(key, "").strip() for key in ("school_year", "opens_on", "closes_on")
    }
    try:
        created = api.rpc().carte.create_campaign(form)
    except ServiceError as exc:
        return _campaigns_page(form=form, **_failure(exc))
    return _campaigns_page(status=201, success=f"Campagne « {created['label']} » créée.")


# ---------------------------------------------------------------- catalogue

CATALOGUE = (
    api.STYLE
    + api.WHO
    + ERRS
    + """{% if result %}<p>Catalogue importé : {{ result.diplomas }} diplômes, {{ result.variants }} formations
({{ result.created }} créées, {{ result.updated }} modifiées, {{ result.withdrawn }} retirées).</p>{% endif %}
{% if problems %}<h2>Problèmes du fichier (rien n'a été importé)</h2>
<table class="problems"><thead><tr><th>Ligne</th><th>Colonne</th><th>Problème</th></tr></thead><tbody>
{% for p in problems %}<tr><td>{{ p.row if p.row is not none else "" }}</td><td>{{ p.column or "" }}</td><td>{{ p.message }}</td></tr>{% endfor %}</tbody></table>{% endif %}
<form method="post" enctype="multipart/form-data"><label for="file">Fichier du catalogue (.xlsx ou .csv :
niveau, diplome, code_diplome, rncp, duree)</label><input id="file" name="file" type="file" accept=".xlsx,.csv" required>
{{ errs("file") }}<button type="submit">Importer</button></form>
<p><a href="/carte/catalogue">Consulter la liste des formations</a></p>
<h2>Formations signalées comme manquantes</h2>
<table><thead><tr><th>Date</th><th>Intitulé</th><th>Code diplôme</th><th>RNCP</th><th>Arrêté</th><th>Message</th><th>Signalée par</th></tr></thead><tbody>
{% for r in reports %}<tr><td>{{ fr(r.created_at) }}</td><td>{{ r.title }}</td><td>{{ r.cfd or "" }}</td><td>{{ r.rncp or "" }}</td>
<td>{{ r.reference or "" }}</td><td>{{ r.message or "" }}</td><td>{{ r.reporter_identifier or "" }}</td></tr>
{% else %}<tr><td colspan="7">Aucun signalement.</td></tr>{% endfor %}</tbody></table>"""  # noqa: E501
)


@bp.route("/carte/admin/catalogue", methods=["GET", "POST"])
def catalogue_admin_page():
    refused = _guard()
    if refused:
        return refused
    context = {"status": 200, "error": None, "errors": {}, "result": None, "problems": []}
    if request.method == "POST":
        try:
            context["result"] = api.import_uploaded_catalogue()
        except ServiceError as exc:
            context.update(_failure(exc))
            details = exc.details if isinstance(exc.details, dict) else {}
            context["problems"] = details.get("problems") or []
    try:
        reports = api.rpc().carte.list_programme_reports()
    except ServiceError as exc:
        reports = []
        if context["status"] < 400:
            context.update(_failure(exc))
    return api._page(
        "Catalogue des formations",
        CATALOGUE,
        success="Catalogue importé." if context["result"] else None,
        who=api._who(),
        reports=reports,
        fr=api._fr_date,
        **context,
    )


# ---------------------------------------------------------------- priorities

PRIORITIES = (
    api.STYLE
    + api.WHO
    + ERRS
    + """<p>Classez vos demandes en cours de saisie par établissement : 1 pour la plus
prioritaire. Les rangs des demandes validées ne changent pas.</p>{{ errs("uai") }}{{ errs("order") }}
{% for uai, rows in groups %}<h2>Établissement {{ uai }}</h2>
<form method="post"><input type="hidden" name="uai" value="{{ uai }}">
<table><thead><tr><th>Rang</th><th>Id</th><th>Mesure</th><th>Diplôme</th><th>Priorité actuelle</th></tr></thead><tbody>
{% for r in rows %}<tr><td><input name="rank_{{ r.id }}" type="number" min="1" value="{{ loop.index }}" aria-label="Rang de la demande {{ r.id }}"></td>
<td>{{ r.id }}</td><td>{{ r.measure }}</td><td>{{ r.diploma }}</td><td>{{ r.priority if r.priority is not none else "—" }}</td></tr>{% endfor %}</tbody></table>
<button type="submit">Enregistrer l'ordre</button></form>
{% else %}<p>Aucune demande en cours de saisie.</p>{% endfor %}
<p><a href="/carte/">Retour à la liste de vos demandes</a></p>"""  # noqa: E501
)


def _rank_key(value: str) -> tuple[int, int]:
    return (int(value), 0) if re.fullmatch(r"[0-9]{1,6}", value or "") else (10**7, 0)


@bp.route("/carte/priorites", methods=["GET", "POST"])
def priorities_page():
    """A filer's drafts by establishment, ranked; « Enregistrer l'ordre »."""
    if not g.caller.authenticated:
        return redirect("/carte/connexion")
    status, error, success, errors = 200, None, None, {}
    if request.method == "POST":
        ranks = {
            key[len("rank_") :]: value
            for key, value in request.form.items()
            if key.startswith("rank_") and key[len("rank_") :].isdigit()
        }
        order = [
            int(i) for i, _v in sorted(ranks.items(), key=lambda kv: (_rank_key(kv[1]), int(kv[0])))
        ]
        try:
            api.rpc().carte.reorder_priorities(request.form.get("uai", ""), order)
            success = "L'ordre de priorité a été enregistré."
        except ServiceError as exc:
            status, error, errors = exc.status, exc.message, api.field_errors(exc)
    try:
        board = api.rpc().carte.dashboard()
    except ServiceError as exc:
        return api._page("Priorités de vos demandes", status=exc.status, error=exc.message)
    groups: dict[str, list] = {}
    for row in board.get("drafts") or []:
        if row.get("editable", True) and row.get("concerned_uai"):
            groups.setdefault(row["concerned_uai"], []).append(row)
    for rows in groups.values():
        rows.sort(key=lambda r: (r.get("priority") is None, r.get("priority") or 0, r["id"]))
    return api._page(
        "Priorités de vos demandes",
        PRIORITIES,
        status=status,
        error=error,
        success=success,
        errors=errors,
        groups=sorted(groups.items()),
        who=board.get("signed_in_as", ""),
    )
