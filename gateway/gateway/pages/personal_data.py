"""The agency's page « Données personnelles » (/agence/donnees-personnelles):
find a person's account, download everything the platform holds about them
(a zip: the JSON and their files), erase it on their request.

The composition is gateway.api.personal_data's; both actions want a fresh
second factor and are audited by identity.
"""

from __future__ import annotations

from flask import Blueprint, redirect, request, url_for

from gateway.api import personal_data as api
from gateway.pages.agency_surveys import _gate
from gateway.pages.surveys import STYLE, fr_time
from gateway.rpc import rpc
from gateway.web import page
from kit.errors import ServiceError

bp = Blueprint("personal_data_pages", __name__)

TITLE = "Données personnelles"

SEARCH = """{{ style|safe }}
<p>Sur demande d'une personne (droits d'accès, de rectification, d'effacement : voir le
registre des traitements), retrouvez son compte pour télécharger ses données ou les effacer.</p>
<form method="get" action="/agence/donnees-personnelles" role="search">
<label for="q">Adresse e-mail, nom ou identifiant carte</label>
<input id="q" name="q" type="search" value="{{ query }}" minlength="3" required>
<button type="submit">Rechercher</button></form>
{% if query %}<table><caption class="hint">{{ items|length }} compte(s)</caption><thead><tr>
<th scope="col">Nom</th><th scope="col">Adresse e-mail</th><th scope="col">Profil</th>
<th scope="col">État</th></tr></thead><tbody>
{% for p in items %}<tr><td><a href="/agence/donnees-personnelles/{{ p.id }}">{{ p.display_name }}</a></td>
<td>{{ p.email }}</td><td>{{ p.profile }}</td><td>{{ p.state_label }}</td></tr>
{% else %}<tr><td colspan="4">Aucun compte ne correspond.</td></tr>{% endfor %}</tbody></table>{% endif %}
"""

PERSON = """{{ style|safe }}
<dl><dt>Nom</dt><dd>{{ p.display_name }}</dd>
<dt>Adresse e-mail</dt><dd>{{ p.email }}</dd>
<dt>Téléphone</dt><dd>{{ p.phone or "—" }}</dd>
<dt>Organisme</dt><dd>{{ p.org_name or "—" }}</dd>
<dt>Profil</dt><dd>{{ p.profile }}</dd>
<dt>État</dt><dd>{{ p.state_label }}</dd>
{% if p.carte_account %}<dt>Compte carte des formations</dt><dd>{{ p.carte_account.identifier }} ({{ p.carte_account.kind_label }})</dd>{% endif %}
<dt>Créé le</dt><dd>{{ fr_time(p.created_at) }}</dd>
{% if p.anonymised_at %}<dt>Données effacées le</dt><dd>{{ fr_time(p.anonymised_at) }}</dd>{% endif %}</dl>
<h2>Droit d'accès</h2>
<p>L'archive contient, au format JSON, le compte, ses sessions, le journal des actions qui
le concernent, les enquêtes transmises, les demandes de la carte des formations, les courriels
envoyés, ainsi que les fichiers déposés par la personne. Le téléchargement est enregistré dans
le journal d'audit.</p>
<p><a href="/agence/donnees-personnelles/{{ p.id }}/export.zip" download>Télécharger les données (zip)</a></p>
<h2>Droit à l'effacement</h2>
{% if p.anonymised_at %}<p>Les données de cette personne ont déjà été effacées.</p>{% else %}
<p>L'effacement désactive le compte et remplace le nom, l'adresse e-mail et le téléphone de la
personne partout où la plateforme les a copiés. Les enquêtes transmises restent à l'organisme
jusqu'à la fin de leur durée de conservation. <strong>Cette action est définitive.</strong></p>
<form method="post" action="/agence/donnees-personnelles/{{ p.id }}/effacer">
<label for="reason">Référence de la demande (facultatif)</label>
<input id="reason" name="reason" maxlength="500" value="{{ reason }}">
<p><input type="checkbox" id="confirm" name="confirm" value="1" required>
<label for="confirm">Je confirme l'effacement des données de {{ p.display_name }}</label></p>
<button type="submit">Effacer les données</button></form>{% endif %}
<p><a href="/agence/donnees-personnelles">Rechercher une autre personne</a></p>
"""

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
    return page(TITLE, SEARCH, status=status, error=error, style=STYLE, query=query, items=items)


def _person_page(user_id: str, status=200, error=None, reason=""):
    try:
        person = rpc().identity.get_person(user_id)
    except ServiceError as exc:
        return page(TITLE, status=exc.status, error=exc.message)
    return page(
        f"{TITLE} : {person['display_name']}",
        PERSON,
        status=status,
        error=error,
        success=DONE.get(request.args.get("fait", "")),
        style=STYLE,
        fr_time=fr_time,
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
