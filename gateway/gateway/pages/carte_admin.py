"""The carte administrator's pages (Carif-Oref) and the filers' « Priorités ».

``/carte/admin/comptes``: the accounts, a form to create one (the issued
password is shown once) and « Régénérer le mot de passe ``.
``/carte/admin/campagnes``: the campaigns and a form to open one.
``/carte/admin/catalogue``: the catalogue import (.xlsx/.csv, every problem
with its row and column) and the missing programmes reported.
``/carte/priorites``: a filer reorders the priorities of its drafts.

The same RPCs as the JSON routes of ``gateway.api.carte`` (through its module,
so its helpers and fakes apply); the layout and the « connecté en tant que »
banner are ``gateway.pages.carte``'s (templates/carte/). Service errors become
a page with the status, the French message and the per-field errors.
"""

from __future__ import annotations

import re

from flask import Blueprint, g, redirect, request

from gateway.api import carte as api
from gateway.pages.carte import carte_page, who_banner
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


def _guard():
    """None when the caller is an administrator, else the redirect or 403 page."""
    if not g.caller.authenticated:
        return redirect("/carte/connexion")
    if not api.is_admin():
        return carte_page(
            "Accès refusé",
            status=403,
            error="Réservé aux administrateurs de la carte des formations.",
        )
    return None


def _failure(exc: ServiceError) -> dict:
    return {"status": exc.status, "error": exc.message, "errors": api.field_errors(exc)}


# ---------------------------------------------------------------- accounts

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
    return carte_page(
        "Comptes de la carte des formations",
        "carte/admin_accounts.html",
        status=status,
        error=error,
        success=success,
        who=who_banner(),
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


def _campaigns_page(form=None, status=200, error=None, errors=None, success=None):
    try:
        campaigns = api.rpc().carte.list_campaigns()
    except ServiceError as exc:
        campaigns, status, error = [], exc.status, exc.message
    return carte_page(
        "Campagnes de la carte des formations",
        "carte/admin_campaigns.html",
        status=status,
        error=error,
        success=success,
        who=who_banner(),
        campaigns=campaigns,
        form=form or {"school_year": "", "opens_on": "", "closes_on": ""},
        errors=errors or {},
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
    return carte_page(
        "Catalogue des formations",
        "carte/admin_catalogue.html",
        success="Catalogue importé." if context["result"] else None,
        who=who_banner(),
        reports=reports,
        **context,
    )


# ---------------------------------------------------------------- priorities


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
        return carte_page("Priorités de vos demandes", status=exc.status, error=exc.message)
    groups: dict[str, list] = {}
    for row in board.get("drafts") or []:
        if row.get("editable", True) and row.get("concerned_uai"):
            groups.setdefault(row["concerned_uai"], []).append(row)
    for rows in groups.values():
        rows.sort(key=lambda r: (r.get("priority") is None, r.get("priority") or 0, r["id"]))
    return carte_page(
        "Priorités de vos demandes",
        "carte/priorities.html",
        status=status,
        error=error,
        success=success,
        errors=errors,
        groups=sorted(groups.items()),
        who=board.get("signed_in_as", ""),
    )
