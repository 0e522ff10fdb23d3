"""The agency's use cases on partners, and the partner's own reads.

Every change is in the partner's audit trail (``PartnerAudit``, hash-chained
by ``kit.audit``: see ``audit``). Secrets
(API keys, the webhook secret, the AMQP password) are returned once, by the
call that makes them, and never again.
"""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from kit import audit as kit_audit
from kit.context import Caller
from kit.errors import InvalidInput
from notify import problems
from notify.models import (
    ACTIVE,
    AMQP,
    CHANNELS,
    DELIVERY_DISABLED,
    DELIVERY_PENDING,
    DELIVERY_STATES,
    DISABLED,
    WEBHOOK,
    DeliveryAttempt,
    Partner,
    PartnerAudit,
    PartnerAuditChain,
    PartnerDelivery,
    PartnerEvent,
    PartnerKey,
)
from notify.partners import catalogue, feed, keys, scope, ssrf
from notify.partners.amqp import AmqpUnavailable
from notify.partners.settings import PartnerSettings

EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
MAX_KEYS = 5
LAST_USED_EVERY = dt.timedelta(minutes=1)


# ---------------------------------------------------------------- shapes


def iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def key_dict(k: PartnerKey) -> dict:
    return {
        "id": k.id,
        "prefix": k.prefix,
        "label": k.label,
        "created_at": iso(k.created_at),
        "last_used_at": iso(k.last_used_at),
        "revoked_at": iso(k.revoked_at),
    }


def partner_dict(session: Session, p: Partner, provisioner=None) -> dict:
    rows = session.scalars(
        select(PartnerKey).where(PartnerKey.partner_id == p.id).order_by(PartnerKey.created_at)
    )
    amqp = None
    if p.amqp_username:
        amqp = {
            "username": p.amqp_username,
            "vhost": provisioner.vhost if provisioner else None,
            "queue": f"partner.{p.id}",
        }
    return {
        "id": p.id,
        "name": p.name,
        "contact_email": p.contact_email,
        "state": p.state,
        "event_types": list(p.event_types or []),
        "scope": dict(p.scope or {}),
        "webhook": (
            {
                "url": p.webhook_url,
                "state": p.webhook_state,
                "failing_since": iso(p.webhook_failing_since),
                "disabled_reason": p.webhook_disabled_reason,
                "previous_secret_valid_until": iso(p.previous_secret_until),
            }
            if p.webhook_url
            else None
        ),
        "amqp": amqp,
        "keys": [key_dict(k) for k in rows],
        "created_at": iso(p.created_at),
        "updated_at": iso(p.updated_at),
    }


def event_types() -> dict:
    return {
        "items": [
            {"name": t.name, "type": t.type, "description_fr": t.description_fr}
            for t in catalogue.CATALOGUE.values()
        ]
    }


def audit(session, partner_id, actor, action, **details) -> PartnerAudit:
    """Appends one entry to the partner audit chain (kit.audit). It locks the
    chain's head row until the caller's transaction ends: call it after any
    slow outside call (RabbitMQ's API), just before the commit."""
    return kit_audit.append(
        session,
        PartnerAudit,
        PartnerAuditChain,
        org_id=partner_id,
        actor_id=actor,
        action=action,
        detail=details,
    )


# ---------------------------------------------------------------- validation


def _validate(data, settings: PartnerSettings, partial: bool) -> dict:
    if not isinstance(data, dict):
        raise problems.error(
            "partner.invalid_input", fields={"body": ["Un objet JSON est attendu."]}
        )
    errors: dict[str, list[str]] = {}
    codes: dict[str, str] = {}
    clean: dict = {}
    allowed = {
        "name",
        "contact_email",
        "event_types",
        "scope",
        "webhook_url",
        "amqp",
        "state",
        "webhook_state",
    }
    for key in sorted(set(data) - allowed):
        errors[key] = ["Champ inconnu."]
    if "name" in data or not partial:
        name = data.get("name")
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= 200:
            errors["name"] = ["Le nom est obligatoire (200 caractères au plus)."]
        else:
            clean["name"] = " ".join(name.split())
    if "contact_email" in data or not partial:
        email = data.get("contact_email")
        if not isinstance(email, str) or len(email) > 254 or not EMAIL.match(email.strip()):
            errors["contact_email"] = ["Une adresse e-mail de contact valide est obligatoire."]
        else:
            clean["contact_email"] = email.strip().lower()
    if "event_types" in data or not partial:
        types = data.get("event_types")
        if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
            errors["event_types"] = ["Choisissez au moins un type d'événement."]
        else:
            unknown = [t for t in types if t not in catalogue.CATALOGUE]
            if unknown:
                errors["event_types"] = [
                    f"Type d'événement inconnu : {', '.join(unknown[:5])} "
                    f"(types possibles : {', '.join(catalogue.CATALOGUE)})."
                ]
                codes["event_types"] = "partner.event_type_unknown"
            else:
                clean["event_types"] = [t for t in catalogue.CATALOGUE if t in types]
    if "scope" in data or not partial:
        try:
            clean["scope"] = scope.validate(data.get("scope"))
        except InvalidInput as exc:
            errors.update(exc.details["fields"])
            codes.update({f: scope.SCOPE_INVALID for f in exc.details["fields"]})
    if "webhook_url" in data:
        url = data.get("webhook_url")
        if url in (None, ""):
            clean["webhook_url"] = None
        else:
            try:
                settings.check_url(url)
                clean["webhook_url"] = url.strip()
            except ssrf.UnsafeUrl as exc:
                errors["webhook_url"] = [str(exc)]
                codes["webhook_url"] = "partner.webhook_url_invalid"
    if "amqp" in data:
        if not isinstance(data["amqp"], bool):
            errors["amqp"] = ["true ou false."]
        else:
            clean["amqp"] = data["amqp"]
    if "state" in data:
        if data["state"] not in (ACTIVE, DISABLED):
            errors["state"] = ["« active » ou « disabled »."]
        else:
            clean["state"] = data["state"]
    if "webhook_state" in data:
        if data["webhook_state"] not in ("enabled", "disabled"):
            errors["webhook_state"] = ["« enabled » ou « disabled »."]
        else:
            clean["webhook_state"] = data["webhook_state"]
    if errors:
        specific = {codes.get(f) for f in errors}
        code = specific.pop() if len(specific) == 1 and None not in specific else None
        raise problems.error(code or "partner.invalid_input", variant="save", fields=errors)
    return clean


def _partner(session, partner_id, for_update=False) -> Partner:
    if not isinstance(partner_id, str) or len(partner_id) > 64:
        raise problems.error("partner.not_found")
    query = select(Partner).where(Partner.id == partner_id)
    if for_update:
        query = query.with_for_update()
    row = session.scalar(query)
    if row is None:
        raise problems.error("partner.not_found")
    return row


def _need_amqp(settings, provisioner):
    if not settings.amqp or provisioner is None:
        raise problems.error("partner.amqp_unavailable")


def _provision(provisioner, partner_id, types) -> dict:
    try:
        return provisioner.provision(partner_id, types)
    except AmqpUnavailable as exc:
        raise problems.error("partner.amqp_unavailable", reason=str(exc)) from exc


# ---------------------------------------------------------------- partners


def create_partner(
    session: Session, caller: Caller, data, settings: PartnerSettings, provisioner, now
) -> dict:
    caller.require_agency()
    clean = _validate(data, settings, partial=False)
    if clean.get("amqp"):
        _need_amqp(settings, provisioner)
    partner = Partner(
        name=clean["name"],
        contact_email=clean["contact_email"],
        state=clean.get("state", ACTIVE),
        event_types=clean["event_types"],
        scope=clean["scope"],
        created_at=now,
        updated_at=now,
    )
    secret = None
    if clean.get("webhook_url"):
        secret = keys.new_webhook_secret()
        partner.webhook_url = clean["webhook_url"]
        partner.webhook_state = "enabled"
        partner.webhook_secret = secret
    session.add(partner)
    session.flush()
    api_key, key_row = _new_key(session, partner.id, "clé initiale", now)
    credentials = None
    if clean.get("amqp"):
        credentials = _provision(provisioner, partner.id, partner.event_types)
        partner.amqp_username = credentials["username"]
    audit(
        session,
        partner.id,
        caller.user_id,
        "created",
        name=partner.name,
        event_types=partner.event_types,
        scope=partner.scope,
        webhook_url=partner.webhook_url,
        amqp=bool(credentials),
    )
    session.commit()
    return {
        "partner": partner_dict(session, partner, provisioner),
        "api_key": api_key,
        "key": key_dict(key_row),
        "webhook_secret": secret,
        "amqp_credentials": credentials,
    }


def update_partner(
    session: Session, caller: Caller, partner_id, data, settings, provisioner, now
) -> dict:
    caller.require_agency()
    partner = _partner(session, partner_id, for_update=True)
    clean = _validate(data, settings, partial=True)
    changes = {}
    for field in ("name", "contact_email", "event_types", "scope"):
        if field in clean and clean[field] != getattr(partner, field):
            changes[field] = clean[field]
            setattr(partner, field, clean[field])
    credentials = None
    if "webhook_url" in clean and clean["webhook_url"] != partner.webhook_url:
        changes["webhook_url"] = clean["webhook_url"]
        if clean["webhook_url"] is None:
            partner.webhook_url = partner.webhook_state = partner.webhook_secret = None
            partner.previous_secret = partner.previous_secret_until = None
            _set_deliveries(session, partner.id, WEBHOOK, DELIVERY_PENDING, DELIVERY_DISABLED, now)
        else:
            if partner.webhook_secret is None:
                partner.webhook_secret = keys.new_webhook_secret()
                credentials = {"webhook_secret": partner.webhook_secret}
            partner.webhook_url = clean["webhook_url"]
            partner.webhook_state = "enabled"
            partner.webhook_failing_since = partner.webhook_disabled_reason = None
    if "webhook_state" in clean and partner.webhook_url:
        wanted = clean["webhook_state"]
        if wanted != partner.webhook_state:
            changes["webhook_state"] = wanted
            partner.webhook_state = wanted
            if wanted == "enabled":
                partner.webhook_failing_since = partner.webhook_disabled_reason = None
                _set_deliveries(
                    session, partner.id, WEBHOOK, DELIVERY_DISABLED, DELIVERY_PENDING, now
                )
            else:
                partner.webhook_disabled_reason = "désactivé par l'agence"
                _set_deliveries(
                    session, partner.id, WEBHOOK, DELIVERY_PENDING, DELIVERY_DISABLED, now
                )
    if "state" in clean and clean["state"] != partner.state:
        changes["state"] = clean["state"]
        partner.state = clean["state"]
        if partner.state == DISABLED:
            _set_deliveries(session, partner.id, None, DELIVERY_PENDING, DELIVERY_DISABLED, now)
        else:
            _set_deliveries(session, partner.id, AMQP, DELIVERY_DISABLED, DELIVERY_PENDING, now)
            if partner.webhook_state == "enabled":
                _set_deliveries(
                    session, partner.id, WEBHOOK, DELIVERY_DISABLED, DELIVERY_PENDING, now
                )
    if "amqp" in clean and clean["amqp"] != bool(partner.amqp_username):
        changes["amqp"] = clean["amqp"]
        _need_amqp(settings, provisioner)
        if clean["amqp"]:
            credentials = dict(
                credentials or {},
                amqp_credentials=_provision(provisioner, partner.id, partner.event_types),
            )
            partner.amqp_username = credentials["amqp_credentials"]["username"]
        else:
            try:
                provisioner.remove(partner.id)
            except AmqpUnavailable as exc:
                raise problems.error("partner.amqp_unavailable") from exc
            partner.amqp_username = None
            _set_deliveries(session, partner.id, AMQP, DELIVERY_PENDING, DELIVERY_DISABLED, now)
    elif "event_types" in changes and partner.amqp_username and provisioner is not None:
        try:
            provisioner.bind(partner.id, partner.event_types)
        except AmqpUnavailable as exc:
            raise problems.error("partner.amqp_unavailable") from exc
    if changes:
        partner.updated_at = now
        audit(session, partner.id, caller.user_id, "updated", **changes)
    session.commit()
    result = partner_dict(session, partner, provisioner)
    if credentials:
        result["credentials"] = credentials
    return result


def _set_deliveries(session, partner_id, channel, from_state, to_state, now) -> None:
    query = update(PartnerDelivery).where(
        PartnerDelivery.partner_id == partner_id, PartnerDelivery.state == from_state
    )
    if channel is not None:
        query = query.where(PartnerDelivery.channel == channel)
    values = {"state": to_state}
    if to_state == DELIVERY_PENDING:
        values["next_attempt_at"] = now
    session.execute(query.values(**values).execution_options(synchronize_session=False))


def delete_partner(session: Session, caller: Caller, partner_id, provisioner) -> dict:
    caller.require_agency()
    partner = _partner(session, partner_id, for_update=True)
    if partner.amqp_username and provisioner is not None:
        try:
            provisioner.remove(partner.id)
        except AmqpUnavailable as exc:
            raise problems.error("partner.amqp_unavailable") from exc
    doomed = select(PartnerDelivery.id).where(PartnerDelivery.partner_id == partner.id)
    session.query(DeliveryAttempt).filter(DeliveryAttempt.delivery_id.in_(doomed)).delete(
        synchronize_session=False
    )
    session.query(PartnerDelivery).filter(PartnerDelivery.partner_id == partner.id).delete(
        synchronize_session=False
    )
    session.query(PartnerKey).filter(PartnerKey.partner_id == partner.id).delete(
        synchronize_session=False
    )
    audit(session, partner.id, caller.user_id, "deleted", name=partner.name)
    session.delete(partner)
    session.commit()
    return {"deleted": True, "id": partner_id}


def get_partner(session, caller: Caller, partner_id, provisioner=None) -> dict:
    caller.require_agency()
    return partner_dict(session, _partner(session, partner_id), provisioner)


def list_partners(session, caller: Caller, provisioner=None) -> dict:
    caller.require_agency()
    rows = session.scalars(select(Partner).order_by(func.lower(Partner.name), Partner.id))
    return {"items": [partner_dict(session, p, provisioner) for p in rows]}


def list_audit(session, caller: Caller, partner_id) -> dict:
    caller.require_agency()
    rows = session.scalars(
        select(PartnerAudit)
        .where(PartnerAudit.partner_id == partner_id)
        .order_by(PartnerAudit.at.desc())
        .limit(200)
    )
    return {
        "items": [
            {"at": iso(r.at), "actor": r.actor, "action": r.action, "details": r.details}
            for r in rows
        ]
    }


# ---------------------------------------------------------------- keys and secrets


def _new_key(session, partner_id, label, now) -> tuple[str, PartnerKey]:
    key, prefix, digest = keys.new_api_key()
    row = PartnerKey(
        partner_id=partner_id, prefix=prefix, key_hash=digest, label=label, created_at=now
    )
    session.add(row)
    return key, row


def create_key(session, caller: Caller, partner_id, label, now) -> dict:
    caller.require_agency()
    partner = _partner(session, partner_id, for_update=True)
    if label is not None and (not isinstance(label, str) or len(label) > 100):
        raise problems.error("partner.invalid_input", fields={"label": ["100 caractères au plus."]})
    live = session.scalar(
        select(func.count())
        .select_from(PartnerKey)
        .where(PartnerKey.partner_id == partner.id, PartnerKey.revoked_at.is_(None))
    )
    if live >= MAX_KEYS:
        raise problems.error("partner.too_many_keys", max_keys=MAX_KEYS)
    key, row = _new_key(session, partner.id, (label or "").strip(), now)
    session.flush()
    audit(session, partner.id, caller.user_id, "key_created", key_id=row.id, prefix=row.prefix)
    session.commit()
    return {"key": key_dict(row), "api_key": key}


def revoke_key(session, caller: Caller, partner_id, key_id, now) -> dict:
    caller.require_agency()
    partner = _partner(session, partner_id)
    row = (
        session.scalar(
            select(PartnerKey).where(PartnerKey.id == key_id, PartnerKey.partner_id == partner.id)
        )
        if isinstance(key_id, str)
        else None
    )
    if row is None:
        raise problems.error("partner.key_not_found")
    if row.revoked_at is None:
        row.revoked_at = now
        audit(session, partner.id, caller.user_id, "key_revoked", key_id=row.id, prefix=row.prefix)
        session.commit()
    return key_dict(row)


def rotate_secret(session, caller: Caller, partner_id, settings: PartnerSettings, now) -> dict:
    caller.require_agency()
    partner = _partner(session, partner_id, for_update=True)
    if not partner.webhook_url:
        raise problems.error("partner.no_webhook")
    until = now + dt.timedelta(hours=settings.secret_overlap_hours)
    partner.previous_secret = partner.webhook_secret
    partner.previous_secret_until = until
    partner.webhook_secret = keys.new_webhook_secret()
    partner.updated_at = now
    audit(session, partner.id, caller.user_id, "secret_rotated", previous_valid_until=iso(until))
    session.commit()
    return {"webhook_secret": partner.webhook_secret, "previous_valid_until": iso(until)}


def signing_secrets(partner: Partner, now: dt.datetime) -> list[str]:
    secrets = [partner.webhook_secret] if partner.webhook_secret else []
    if (
        partner.previous_secret
        and partner.previous_secret_until
        and now < partner.previous_secret_until
    ):
        secrets.append(partner.previous_secret)
    return secrets


# ---------------------------------------------------------------- the partner itself


def authenticate(session: Session, api_key, now) -> dict:
    prefix = keys.parse(api_key)
    row = session.scalar(select(PartnerKey).where(PartnerKey.prefix == prefix)) if prefix else None
    if row is None or row.revoked_at is not None or not keys.same(api_key, row.key_hash):
        raise problems.error("partner.key_invalid")
    partner = session.get(Partner, row.partner_id)
    if partner is None or partner.state != ACTIVE:
        raise problems.error("partner.key_invalid")
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_EVERY:
        row.last_used_at = now
        session.commit()
    return {
        "partner_id": partner.id,
        "name": partner.name,
        "scope": dict(partner.scope or {}),
        "event_types": list(partner.event_types or []),
        "key_id": row.id,
    }


# ---------------------------------------------------------------- deliveries


def _page(filters, name, default, maximum=None) -> int:
    value = filters.get(name, default)
    try:
        number = int(str(value))
    except ValueError:
        number = 0
    if number < 1 or (maximum is not None and number > maximum):
        bound = f" et {maximum}" if maximum else ""
        message = f"Un entier entre 1{bound} est attendu." if maximum else "Un entier ≥ 1."
        raise problems.error("partner.filter_invalid", fields={name: [message]})
    return number


def delivery_dict(d: PartnerDelivery, name: str | None = None, attempts=None) -> dict:
    row = {
        "id": d.id,
        "partner_id": d.partner_id,
        "partner_name": name,
        "event_id": d.event_id,
        "event_type": d.event_type,
        "channel": d.channel,
        "state": d.state,
        "attempts": d.attempts,
        "next_attempt_at": iso(d.next_attempt_at) if d.state == DELIVERY_PENDING else None,
        "delivered_at": iso(d.delivered_at),
        "created_at": iso(d.created_at),
        "last_status": d.last_status,
        "last_error": d.last_error,
    }
    if attempts is not None:
        row["attempts_log"] = [
            {
                "at": iso(a.at),
                "status": a.status,
                "latency_ms": a.latency_ms,
                "response_excerpt": a.response_excerpt,
                "error": a.error,
            }
            for a in attempts
        ]
    return row


def deliveries(session: Session, filters, partner_id: str | None = None) -> dict:
    """The delivery log, newest first; ``partner_id`` forces one partner's."""
    filters = filters if isinstance(filters, dict) else {}
    errors = {}
    query = select(PartnerDelivery, Partner.name).outerjoin(
        Partner, Partner.id == PartnerDelivery.partner_id
    )
    wanted = partner_id or filters.get("partner_id")
    if wanted:
        query = query.where(PartnerDelivery.partner_id == str(wanted)[:64])
    if filters.get("event_type"):
        if filters["event_type"] not in catalogue.CATALOGUE:
            errors["event_type"] = [f"Valeurs possibles : {', '.join(catalogue.CATALOGUE)}."]
        query = query.where(PartnerDelivery.event_type == filters["event_type"])
    if filters.get("state"):
        if filters["state"] not in DELIVERY_STATES:
            errors["state"] = [f"Valeurs possibles : {', '.join(DELIVERY_STATES)}."]
        query = query.where(PartnerDelivery.state == filters["state"])
    if filters.get("channel"):
        if filters["channel"] not in CHANNELS:
            errors["channel"] = [f"Valeurs possibles : {', '.join(CHANNELS)}."]
        query = query.where(PartnerDelivery.channel == filters["channel"])
    if filters.get("event_id"):
        query = query.where(PartnerDelivery.event_id == str(filters["event_id"])[:64])
    if errors:
        raise problems.error("partner.filter_invalid", fields=errors)
    page = _page(filters, "page", 1, 100000)
    per_page = _page(filters, "per_page", 50, 100)
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    rows = session.execute(
        query.order_by(PartnerDelivery.created_at.desc(), PartnerDelivery.id)
        .offset((page - 1) * per_page)
        .limit(per_page)
    ).all()
    return {
        "items": [delivery_dict(d, name) for d, name in rows],
        "total": total,
        "page": page,
        "per_page": per_page,
    }


def delivery(session: Session, delivery_id, partner_id: str | None = None) -> dict:
    row = session.get(PartnerDelivery, delivery_id) if isinstance(delivery_id, str) else None
    if row is None or (partner_id is not None and row.partner_id != partner_id):
        raise problems.error("partner.delivery_not_found")
    partner = session.get(Partner, row.partner_id)
    attempts = session.scalars(
        select(DeliveryAttempt)
        .where(DeliveryAttempt.delivery_id == row.id)
        .order_by(DeliveryAttempt.at)
    ).all()
    return delivery_dict(row, partner.name if partner else None, attempts)


def redeliver(session: Session, caller: Caller, delivery_id, now) -> dict:
    caller.require_agency()
    row = session.get(PartnerDelivery, delivery_id) if isinstance(delivery_id, str) else None
    if row is None:
        raise problems.error("partner.delivery_not_found")
    partner = session.get(Partner, row.partner_id)
    if partner is None or partner.state != ACTIVE:
        raise problems.error("partner.disabled")
    if row.channel == WEBHOOK and partner.webhook_state != "enabled":
        raise problems.error("partner.webhook_disabled")
    row.state = DELIVERY_PENDING
    row.attempts = 0
    row.next_attempt_at = now
    row.locked_until = None
    audit(
        session,
        partner.id,
        caller.user_id,
        "redelivered",
        delivery_id=row.id,
        event_id=row.event_id,
    )
    session.commit()
    return delivery(session, row.id)


def replay(session: Session, caller: Caller, partner_id, since, now) -> dict:
    """Pushes again every event since a date, on each of the partner's channels."""
    caller.require_agency()
    partner = _partner(session, partner_id, for_update=True)
    try:
        start = catalogue.parse_time(since) if isinstance(since, str) and since else None
        if start is None or dt.datetime.fromisoformat(since) is None:
            raise ValueError(since)
    except ValueError as exc:
        raise problems.error(
            "partner.invalid_input",
            fields={
                "since": ["Une date ISO 8601 est attendue (ex. 2026-11-30 ou 2026-11-30T08:00)."]
            },
        ) from exc
    if partner.state != ACTIVE:
        raise problems.error("partner.disabled")
    events = session.scalars(
        select(PartnerEvent)
        .where(PartnerEvent.received_at >= start, feed.visible(partner))
        .order_by(PartnerEvent.seq)
    ).all()
    existing = {
        (d.event_id, d.channel): d
        for d in session.scalars(
            select(PartnerDelivery).where(
                PartnerDelivery.partner_id == partner.id,
                PartnerDelivery.event_id.in_([e.event_id for e in events]),
            )
        )
    }
    scheduled = 0
    for event in events:
        for fresh in feed.schedule_for(partner, event, now):
            if fresh.state != DELIVERY_PENDING:
                continue
            old = existing.get((event.event_id, fresh.channel))
            if old is None:
                session.add(fresh)
            else:
                old.state, old.attempts, old.next_attempt_at = DELIVERY_PENDING, 0, now
                old.locked_until = None
            scheduled += 1
    audit(session, partner.id, caller.user_id, "replayed", since=since, scheduled=scheduled)
    session.commit()
    return {"scheduled": scheduled}
