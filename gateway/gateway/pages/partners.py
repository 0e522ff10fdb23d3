"""HTML pages of the agency for the partner interface (issue 7):
« Partenaires » (/agence/partenaires: the partners, « Nouveau partenaire »),
a partner's page (edit, keys, webhook secret, replay from a date, history,
delete) and the delivery log (filters by partner, event type, state and
channel; « Renvoyer » one delivery; each delivery's attempts).

The templates are files (``gateway/templates/partners/``). They call the
same notify RPCs as the JSON API (``gateway.api.partners``), and notify
checks the agency role too. Secrets (API key, webhook secret, AMQP password)
are shown on the page that answers the POST which made them, never again;
every page is ``Cache-Control: no-store``. Other actions answer a redirect
(303) with a fixed message.
"""

from __future__ import annotations

from flask import Blueprint, redirect, request, url_for

from gateway.pages.agency_surveys import _fields, _gate
from gateway.pages.surveys import problems
from gateway.rpc import rpc
from gateway.web import page
from kit.errors import InvalidInput, ServiceError

bp = Blueprint("partner_pages", __name__)

ACADEMIES = ("montpellier", "toulouse")
DONE = {
    "modifie": "Le partenaire est modifié.",
    "supprime": "Le partenaire est supprimé.",
    "cle_revoquee": "La clé est révoquée : elle n'ouvre plus rien.",
    "renvoyee": "La livraison est programmée : elle part dans quelques secondes.",
}
ACTIONS = {
    "created": "Création",
    "updated": "Modification",
    "deleted": "Suppression",
    "key_created": "Clé créée",
    "key_revoked": "Clé révoquée",
    "secret_rotated": "Secret renouvelé",
    "redelivered": "Livraison renvoyée",
    "replayed": "Rejeu",
    "webhook_disabled": "Webhook suspendu",
}


def _render(title, template, status=200, error=None, success=None, **context):
    return page(
        title,
        template=template,
        status=status,
        error=error,
        success=success,
        academies=ACADEMIES,
        **context,
    )


def _secrets(title, partner_id, status=200, api_key=None, webhook_secret=None, amqp=None, **more):
    """The one page that shows new secrets (they are never shown again)."""
    return _render(
        title,
        "partners/secrets.html",
        status=status,
        partner_id=partner_id,
        api_key=api_key,
        webhook_secret=webhook_secret,
        amqp=amqp,
        **more,
    )


def _types() -> list[dict]:
    return rpc().notify.list_event_types()["items"]


def _form_data(editing: bool) -> dict:
    """The JSON the notify RPCs take, from the form: an empty part of the
    scope is no restriction on it."""
    form = request.form
    scope: dict = {}
    if form.getlist("account_types"):
        scope["account_types"] = form.getlist("account_types")
    sirets = [s.strip() for s in form.get("sirets", "").replace(",", "\n").splitlines()]
    if any(sirets):
        scope["sirets"] = [s for s in sirets if s]
    if form.getlist("academies"):
        scope["academies"] = form.getlist("academies")
    data = {
        "name": form.get("name", ""),
        "contact_email": form.get("contact_email", ""),
        "event_types": form.getlist("event_types"),
        "scope": scope,
        "webhook_url": form.get("webhook_url", "").strip() or None,
        "amqp": form.get("amqp") == "1",
    }
    if editing:
        data["state"] = form.get("state", "active")
        if form.get("webhook_state"):
            data["webhook_state"] = form.get("webhook_state")
    return data


def _values_of(data: dict) -> dict:
    """What the form shows back: the submitted data, or a partner."""
    scope = data.get("scope") or {}
    webhook = data.get("webhook")
    return {
        "name": data.get("name", ""),
        "contact_email": data.get("contact_email", ""),
        "event_types": data.get("event_types") or [],
        "account_types": scope.get("account_types") or [],
        "sirets": "\n".join(scope.get("sirets") or []),
        "academies": scope.get("academies") or [],
        "webhook_url": (webhook or {}).get("url") if webhook else data.get("webhook_url") or "",
        "webhook_state": (webhook or {}).get("state") or data.get("webhook_state"),
        "amqp": bool(data.get("amqp")),
        "state": data.get("state", "active"),
    }


def _list_page(status=200, error=None, success=None, values=None, errors=None):
    try:
        items = rpc().notify.list_partners()["items"]
        types = _types()
    except ServiceError as exc:
        return _render("Partenaires", None, status=exc.status, error=exc.message)
    return _render(
        "Partenaires",
        "partners/list.html",
        status=status,
        error=error,
        success=success,
        items=items,
        types=types,
        values=values or {},
        errors=errors or {},
    )


@bp.get("/agence/partenaires")
def partners():
    return _gate() or _list_page(success=DONE.get(request.args.get("fait", "")))


@bp.post("/agence/partenaires")
def create_partner():
    if refused := _gate():
        return refused
    data = _form_data(editing=False)
    try:
        created = rpc().notify.create_partner(data)
    except ServiceError as exc:
        return _list_page(exc.status, exc.message, values=_values_of(data), errors=_fields(exc))
    return _secrets(
        f"Partenaire créé : {created['partner']['name']}",
        created["partner"]["id"],
        status=201,
        api_key=created.get("api_key"),
        webhook_secret=created.get("webhook_secret"),
        amqp=created.get("amqp_credentials"),
    )


def _detail_page(partner_id, status=200, error=None, success=None, values=None, errors=None):
    try:
        partner = rpc().notify.get_partner(partner_id)
        audit = rpc().notify.list_partner_audit(partner_id)["items"]
        types = _types()
    except ServiceError as exc:
        return _render("Partenaire", None, status=exc.status, error=exc.message)
    return _render(
        f"Partenaire : {partner['name']}",
        "partners/detail.html",
        status=status,
        error=error,
        success=success,
        p=partner,
        audit=audit,
        actions=ACTIONS,
        types=types,
        values=values or _values_of(partner),
        errors=errors or {},
    )


def _back(partner_id: str, done: str, **args):
    return redirect(
        url_for("partner_pages.partner", partner_id=partner_id, fait=done, **args), code=303
    )


@bp.get("/agence/partenaires/<partner_id>")
def partner(partner_id):
    if refused := _gate():
        return refused
    done = request.args.get("fait", "")
    success = DONE.get(done)
    if done == "rejoue":
        success = f"{request.args.get('n', '0')} livraison(s) programmée(s)."
    return _detail_page(partner_id, success=success)


@bp.post("/agence/partenaires/<partner_id>")
def update_partner(partner_id):
    if refused := _gate():
        return refused
    data = _form_data(editing=True)
    try:
        updated = rpc().notify.update_partner(partner_id, data)
    except ServiceError as exc:
        values = _values_of(data)
        return _detail_page(partner_id, exc.status, exc.message, values=values, errors=_fields(exc))
    fresh = updated.get("credentials") or {}
    if fresh:  # a webhook or AMQP access added: its secrets, once
        return _secrets(
            f"Partenaire modifié : {updated['name']}",
            partner_id,
            webhook_secret=fresh.get("webhook_secret"),
            amqp=fresh.get("amqp_credentials"),
        )
    return _back(partner_id, "modifie")


@bp.post("/agence/partenaires/<partner_id>/cles")
def create_key(partner_id):
    if refused := _gate():
        return refused
    try:
        made = rpc().notify.create_partner_key(partner_id, request.form.get("label", ""))
    except ServiceError as exc:
        return _detail_page(partner_id, exc.status, exc.message, errors=_fields(exc))
    return _secrets("Nouvelle clé d'API", partner_id, status=201, api_key=made["api_key"])


@bp.post("/agence/partenaires/<partner_id>/cles/<key_id>/revoquer")
def revoke_key(partner_id, key_id):
    if refused := _gate():
        return refused
    try:
        rpc().notify.revoke_partner_key(partner_id, key_id)
    except ServiceError as exc:
        return _detail_page(partner_id, exc.status, exc.message)
    return _back(partner_id, "cle_revoquee")


@bp.post("/agence/partenaires/<partner_id>/secret")
def rotate_secret(partner_id):
    if refused := _gate():
        return refused
    try:
        made = rpc().notify.rotate_webhook_secret(partner_id)
    except ServiceError as exc:
        return _detail_page(partner_id, exc.status, exc.message)
    return _secrets(
        "Nouveau secret de signature",
        partner_id,
        webhook_secret=made["webhook_secret"],
        previous_valid_until=made.get("previous_valid_until"),
    )


@bp.post("/agence/partenaires/<partner_id>/rejouer")
def replay(partner_id):
    if refused := _gate():
        return refused
    try:
        result = rpc().notify.replay_partner(partner_id, request.form.get("since", ""))
    except ServiceError as exc:
        return _detail_page(partner_id, exc.status, exc.message, errors=_fields(exc))
    return _back(partner_id, "rejoue", n=result["scheduled"])


@bp.post("/agence/partenaires/<partner_id>/supprimer")
def delete_partner(partner_id):
    if refused := _gate():
        return refused
    if request.form.get("confirm") != "1":
        exc = InvalidInput.fields(
            {"confirm": ["Cochez la case pour confirmer la suppression."]},
            "partner.confirmation_missing",
        )
        return _detail_page(partner_id, 422, exc.message, errors=_fields(exc))
    try:
        rpc().notify.delete_partner(partner_id)
    except ServiceError as exc:
        return _detail_page(partner_id, exc.status, exc.message)
    return redirect(url_for("partner_pages.partners", fait="supprime"), code=303)


# ---------------------------------------------------------------- deliveries

FILTERS = ("partner_id", "event_type", "state", "channel", "page")


@bp.get("/agence/partenaires/livraisons")
def deliveries():
    if refused := _gate():
        return refused
    f = {n: request.args.get(n, "").strip() for n in FILTERS}
    wanted = {n: v for n, v in f.items() if v}

    def link(number: int) -> str:
        return url_for("partner_pages.deliveries", **dict(wanted, page=number))

    context = {
        "f": f,
        "link": link,
        "back": request.full_path,
        "partners": rpc().notify.list_partners()["items"],
        "types": _types(),
    }
    title = "Journal des livraisons"
    success = DONE.get(request.args.get("fait", ""))
    try:
        result = rpc().notify.list_deliveries(wanted)
    except ServiceError as exc:
        empty = {"items": [], "total": 0, "page": 1, "per_page": 50}
        return _render(
            title,
            "partners/deliveries.html",
            status=exc.status,
            error=exc.message,
            result=empty,
            pages=1,
            problems=problems(exc),
            **context,
        )
    pages = max(1, -(-result["total"] // result["per_page"]))
    return _render(
        title,
        "partners/deliveries.html",
        success=success,
        result=result,
        pages=pages,
        problems=[],
        **context,
    )


@bp.get("/agence/partenaires/livraisons/<delivery_id>")
def delivery(delivery_id):
    if refused := _gate():
        return refused
    try:
        found = rpc().notify.get_delivery(delivery_id)
    except ServiceError as exc:
        return _render("Livraison", None, status=exc.status, error=exc.message)
    success = DONE.get(request.args.get("fait", ""))
    return _render("Livraison", "partners/delivery.html", success=success, d=found)


@bp.post("/agence/partenaires/livraisons/<delivery_id>/renvoyer")
def redeliver(delivery_id):
    if refused := _gate():
        return refused
    try:
        rpc().notify.redeliver(delivery_id)
    except ServiceError as exc:
        return _render("Livraison", None, status=exc.status, error=exc.message)
    back = request.form.get("back", "")
    if back.startswith("/agence/partenaires/livraisons") and "//" not in back:
        sep = "&" if "?" in back else "?"
        return redirect(f"{back}{sep}fait=renvoyee", code=303)
    return redirect(
        url_for("partner_pages.delivery", delivery_id=delivery_id, fait="renvoyee"), code=303
    )
