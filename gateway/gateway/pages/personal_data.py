"""The agency's page « Données personnelles » (/agence/donnees-personnelles):
find a person's account, download everything the platform holds about them
(a zip: the JSON and their files), erase it on their request.

The composition is gateway.api.personal_data's; both actions want a fresh
second factor and are audited by identity. The markup is in
``gateway/templates/agency/personal_data.html`` and ``person.html``.
"""

from __future__ import annotations

from flask import Blueprint, redirect, request, url_for

from gateway.api import personal_data as api
from gateway.pages.agency_surveys import _gate
from gateway.rpc import rpc
from gateway.web import page
from kit.errors import ServiceError

bp = Blueprint("personal_data_pages", __name__)

TITLE = "Données personnelles"

DONE = {"efface": "Les données de la personne ont été effacées."}


@bp.get("/agence/donnees-personnelles")
def search():
    if refused := _gate():
        return refused
    query = request.args.get("q", "").strip()
    items, error, status = [], None, 200
    if query:
        try:
            items = rpc().identity.find_people(query)
        except ServiceError as exc:
            error, status = exc.message, exc.status
    return page(
        TITLE,
        template="agency/personal_data.html",
        status=status,
        error=error,
        query=query,
        items=items,
    )


def _person_page(user_id: str, status=200, error=None, reason=""):
    try:
        person = rpc().identity.get_person(user_id)
    except ServiceError as exc:
        return page(TITLE, status=exc.status, error=exc.message)
    return page(
        f"{TITLE} : {person['display_name']}",
        template="agency/person.html",
        status=status,
        error=error,
        success=DONE.get(request.args.get("fait", "")),
        p=person,
        reason=reason,
    )


@bp.get("/agence/donnees-personnelles/<user_id>")
def person(user_id):
    if refused := _gate():
        return refused
    return _person_page(user_id)


@bp.get("/agence/donnees-personnelles/<user_id>/export.zip")
@api.reauthentication_required
def export(user_id):
    if refused := _gate():
        return refused
    return api.zip_response(user_id)


@bp.post("/agence/donnees-personnelles/<user_id>/effacer")
@api.reauthentication_required
def erase(user_id):
    if refused := _gate():
        return refused
    reason = request.form.get("reason", "").strip()
    if request.form.get("confirm") != "1":
        return _person_page(
            user_id, 422, "Cochez la case de confirmation pour effacer les données.", reason
        )
    try:
        api.erase(user_id, reason or None)
    except ServiceError as exc:
        return _person_page(user_id, exc.status, exc.message, reason)
    return redirect(url_for("personal_data_pages.person", user_id=user_id, fait="efface"), code=303)
