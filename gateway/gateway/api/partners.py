"""HTTP API of the partner interface (issue 7, docs/partners-design.md).

Two audiences, two blueprints:

- ``bp`` — the partner agencies themselves, under ``/api/v1/partner/…``,
  authenticated by a partner API key (``Authorization: Bearer fpk_…`` or
  ``X-Api-Key: fpk_…``). Only a key opens these routes: a session token or
  cookie is never accepted here, and a key opens nothing else (it is not a
  signed session token, so ``gateway.auth`` treats it as anonymous).
  The feed (``/partner/events``) is one RPC to notify, which checks the key
  itself; object reads first ask notify who the key belongs to
  (``authenticate_partner``: the partner's scope), then ask the owning service
  for the object within that scope (404 outside it).
- ``admin`` — the agency's administration of partners, under
  ``/api/v1/partners…`` and ``/api/v1/partner-deliveries…``.

Long polling: ``wait`` (0 to 30 s) makes an empty feed page wait for new
events, polling notify once a second. At most ``PARTNER_LONG_POLL_MAX``
requests wait at once per worker process (each holds a thread); beyond that
the empty page is answered at once, which the contract allows (« jusqu'à »).
"""

from __future__ import annotations

import functools
import threading
import time
from importlib import resources

from flask import Blueprint, Response, current_app, g, jsonify, request

from gateway import auth
from gateway.errors import GatewayError, json_body
from gateway.ratelimit import check
from gateway.rpc import rpc
from gateway.uploads import send_stored_file
from kit.context import PARTNER, SYSTEM, Caller

bp = Blueprint("partner_api", __name__)
admin = Blueprint("partners_admin_api", __name__)

KEY_PREFIX = "fpk_"
MAX_WAIT = 30
POLL_EVERY = 1.0
FILE_TIMEOUT = 30.0
PER_MINUTE = 600  # requests per key and per worker process
EXTENSION = "gateway.partner.long_poll"
DELIVERY_FILTERS = ("event_type", "state", "channel", "event_id", "page", "per_page")

KEY_MISSING = (
    "partner.key_missing",
    "Clé d'API manquante : envoyez-la dans l'en-tête « Authorization: Bearer <clé> » "
    "ou « X-Api-Key ».",
)
KEY_INVALID = ("partner.key_invalid", "Clé d'API inconnue ou révoquée.")


# ---------------------------------------------------------------- the partner's key


def _unauthorised(code: str, message: str) -> GatewayError:
    return GatewayError(401, code, message)


def api_key() -> str:
    """The partner key of this request, or 401 (a session token is no key)."""
    key = request.headers.get("X-Api-Key", "").strip()
    header = request.headers.get("Authorization", "")
    if not key and header[:7].lower() == "bearer ":
        key = header[7:].strip()
    if not key:
        raise _unauthorised(*KEY_MISSING)
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        raise _unauthorised(*KEY_INVALID)
    # the prefix names the key without revealing it: the rate limit's key
    check("partner-api", key[:13], PER_MINUTE)
    return key


def partner() -> dict:
    """Who the key belongs to (notify): ``{partner_id, name, scope, event_types}``;
    the caller of the following RPCs becomes that partner."""
    me = rpc().notify.authenticate_partner(api_key())
    g.caller = Caller(
        user_id=f"partner:{me['partner_id']}",
        roles=(PARTNER,),
        request_id=g.caller.request_id,
    )
    return me


def _filters(*names: str) -> dict:
    return {n: request.args[n] for n in names if request.args.get(n)}


def _links(result: dict) -> dict:
    base = current_app.config["PUBLIC_URL"]
    tid = result.get("transmission_id")
    if tid:
        result["links"] = {
            "transmission": f"{base}/api/v1/partner/transmissions/{tid}",
            "file": f"{base}/api/v1/partner/transmissions/{tid}/file",
        }
    return result


def _wait_seconds() -> int:
    raw = request.args.get("wait", "0")
    try:
        wait = int(raw)
    except ValueError:
        wait = -1
    if not 0 <= wait <= MAX_WAIT:
        raise GatewayError(
            400,
            "partner.wait_invalid",
            f"« wait » doit être un nombre entier de secondes entre 0 et {MAX_WAIT}.",
        )
    return wait


def _long_poll_gate() -> threading.BoundedSemaphore:
    app = current_app._get_current_object()
    gate = app.extensions.get(EXTENSION)
    if gate is None:
        size = int(app.config.get("PARTNER_LONG_POLL_MAX", 4))
        gate = app.extensions.setdefault(EXTENSION, threading.BoundedSemaphore(max(size, 1)))
    return gate


@bp.get("/partner/events")
def events():
    """The feed in commit order: ``?after=<cursor>&limit=1..500&wait=0..30``."""
    key = api_key()
    wait = _wait_seconds()
    after = request.args.get("after") or None
    size = request.args.get("limit")
    page = rpc().notify.partner_feed(key, after, size)
    if page["items"] or wait == 0:
        return jsonify(page)
    gate = _long_poll_gate()
    if not gate.acquire(blocking=False):
        return jsonify(page)  # too many waiting: the empty page now
    try:
        deadline = time.monotonic() + wait
        while not page["items"]:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(POLL_EVERY, left))
            page = rpc().notify.partner_feed(key, page.get("next_cursor") or after, size)
    finally:
        gate.release()
    return jsonify(page)


@bp.get("/partner/deliveries")
def my_deliveries():
    """The partner's own delivery log: ``?event_type=&state=&channel=&page=&per_page=``."""
    return jsonify(rpc().notify.partner_deliveries(api_key(), _filters(*DELIVERY_FILTERS)))


@bp.get("/partner/deliveries/<delivery_id>")
def my_delivery(delivery_id):
    return jsonify(rpc().notify.partner_delivery(api_key(), delivery_id))


@bp.get("/partner/transmissions/<transmission_id>")
def transmission(transmission_id):
    """A transmission within the partner's scope, with its extracted values."""
    me = partner()
    found = rpc().survey.get_partner_transmission(transmission_id, me["scope"])
    return jsonify(_links(found))


@bp.get("/partner/transmissions/<transmission_id>/file")
def transmission_file(transmission_id):
    """The transmitted file itself. Survey has just checked the scope; files
    is then asked as the system, since a partner is no member of the
    organisation that owns the file."""
    me = partner()
    found = rpc().survey.get_partner_transmission(transmission_id, me["scope"])
    g.caller = Caller(user_id=g.caller.user_id, roles=(SYSTEM,), request_id=g.caller.request_id)
    response = send_stored_file(rpc(FILE_TIMEOUT).files.get_file(found["file_id"]))
    response.headers["Cache-Control"] = "no-store"
    if found.get("sha256"):
        response.headers["Digest"] = f"sha-256={found['sha256']}"
    return response


@bp.get("/partner/carte/requests/<request_id>")
def carte_request(request_id):
    """A validated carte request within the partner's scope."""
    me = partner()
    return jsonify(rpc().carte.get_partner_request(request_id, me["scope"]))


@functools.cache
def _asyncapi_text() -> str:
    return resources.files("gateway").joinpath("asyncapi.yaml").read_text(encoding="utf-8")


@bp.get("/asyncapi.yaml")
def asyncapi():
    """The AsyncAPI 3.0 document of what partners receive (read once)."""
    return Response(_asyncapi_text(), mimetype="application/yaml")


# ---------------------------------------------------------------- the agency


@admin.get("/partner-event-types")
@auth.agency_required
def event_types():
    return jsonify(rpc().notify.list_event_types())


@admin.get("/partners")
@auth.agency_required
def list_partners():
    return jsonify(rpc().notify.list_partners())


@admin.post("/partners")
@auth.agency_required
def create_partner():
    """201 ``{partner, api_key, key, webhook_secret, amqp_credentials}``: the
    secrets are shown this once."""
    return jsonify(rpc().notify.create_partner(json_body())), 201


@admin.get("/partners/<partner_id>")
@auth.agency_required
def get_partner(partner_id):
    return jsonify(rpc().notify.get_partner(partner_id))


@admin.patch("/partners/<partner_id>")
@auth.agency_required
def update_partner(partner_id):
    return jsonify(rpc().notify.update_partner(partner_id, json_body()))


@admin.delete("/partners/<partner_id>")
@auth.agency_required
def delete_partner(partner_id):
    return jsonify(rpc().notify.delete_partner(partner_id))


@admin.post("/partners/<partner_id>/keys")
@auth.agency_required
def create_key(partner_id):
    body = json_body(required=False) or {}
    return jsonify(rpc().notify.create_partner_key(partner_id, body.get("label", ""))), 201


@admin.delete("/partners/<partner_id>/keys/<key_id>")
@auth.agency_required
def revoke_key(partner_id, key_id):
    return jsonify(rpc().notify.revoke_partner_key(partner_id, key_id))


@admin.post("/partners/<partner_id>/webhook-secret")
@auth.agency_required
def rotate_secret(partner_id):
    return jsonify(rpc().notify.rotate_webhook_secret(partner_id))


@admin.post("/partners/<partner_id>/replay")
@auth.agency_required
def replay(partner_id):
    """``{"since": "2026-11-30"}`` → 202 ``{scheduled}``."""
    body = json_body()
    return jsonify(rpc().notify.replay_partner(partner_id, body.get("since"))), 202


@admin.get("/partners/<partner_id>/audit")
@auth.agency_required
def partner_audit(partner_id):
    return jsonify(rpc().notify.list_partner_audit(partner_id))


@admin.get("/partner-deliveries")
@auth.agency_required
def deliveries():
    """``?partner_id=&event_type=&state=&channel=&event_id=&page=&per_page=``."""
    return jsonify(rpc().notify.list_deliveries(_filters("partner_id", *DELIVERY_FILTERS)))


@admin.get("/partner-deliveries/<delivery_id>")
@auth.agency_required
def delivery(delivery_id):
    return jsonify(rpc().notify.get_delivery(delivery_id))


@admin.post("/partner-deliveries/<delivery_id>/redeliver")
@auth.agency_required
def redeliver(delivery_id):
    return jsonify(rpc().notify.redeliver(delivery_id)), 202
