"""The notify nameko service: entrypoints only.

Run: ``nameko run --config deploy/nameko.yaml notify.service`` with
``PYTHONPATH=libs/kit:services/notify``. Configuration (container config, else
environment): ``NOTIFY_DB_URL``, ``SMTP_URL`` (default ``smtp://127.0.0.1:8625``,
the local mail catcher), ``MAIL_FROM``, ``PUBLIC_URL`` (base of the links),
``AGENCY_EMAIL`` (France compétences' mailbox), ``NOTIFY_EMAIL_RETENTION_DAYS``
(default 90: e-mails sent or given up are deleted after it, notify.personal_data).

Surface: one handler per identity event that calls for an e-mail
(``on_<event>``: the method name is part of the durable queue's name, never
rename it); ``on_person_anonymised`` erases the e-mails of an account
identity anonymised; emits ``notify.email_failed`` ``{source_event_id, template, error,
delivery_id, attempts, will_retry}``.

Partners (DESIGN §8, docs/partners-design.md, ``notify.partners``): one
handler per partner event (``on_partner_<event>``) adds it to the feed and
schedules its pushes; the agency's RPCs manage partners, keys and deliveries
(``caller.require_agency()``); the partner's RPCs take its API key
(``authenticate_partner``, ``partner_feed``, ``partner_deliveries``,
``partner_delivery``). Partner settings: ``PARTNER_FEED_RETENTION_DAYS``,
``WEBHOOK_TIMEOUT``, ``WEBHOOK_ALLOWED_HOSTS``, ``APP_ENV``,
``WEBHOOK_DISABLE_AFTER_DAYS``, ``WEBHOOK_SECRET_OVERLAP_HOURS``,
``WEBHOOK_RETRY_SCHEDULE``, ``PARTNER_CONCURRENCY``, ``PARTNER_AMQP_URI``,
``PARTNER_RABBIT_API``, ``PARTNER_AMQP_PUBLIC_URI``.

Every error code, its class and French message: ``notify.problems``.
"""

from __future__ import annotations

import logging

from nameko.timer import timer

import kit.service  # not `from … import ServiceBase`: see below
from kit import events
from kit.context import system_clock
from kit.db import Database, utcnow
from kit.entrypoints import rpc
from kit.handlers import event_handler  # retries, then parks (never loses an event)
from notify import personal_data, use_cases
from notify.dependencies import (
    MailerProvider,
    PartnersProvider,
    RetentionProvider,
    SettingsProvider,
)
from notify.models import Outbox
from notify.partners import admin, catalogue, feed

log = logging.getLogger(__name__)


def _partner_event(service: str, event: str):
    """A durable handler that puts the event in the partner feed.

    If the feed cannot be written (database down), ``kit.handlers`` retries
    the event with backoff, then parks it: it is never acknowledged and lost."""
    kind = catalogue.by_event(service, event)

    @event_handler(service, event)
    def handler(self, payload: dict) -> None:
        try:
            created = feed.ingest(self.db, kind, payload, self.partners.settings, utcnow())
        except Exception:
            self.db.rollback()
            raise
        if created:
            self.partners.wake()

    handler.__name__ = f"on_partner_{event}"
    handler.__doc__ = f"Adds ``{kind.name}`` to the partner feed and schedules its pushes."
    return handler


# `nameko run notify.service` runs every class of this module that has
# entrypoints: ServiceBase itself must not be a name of the module.
class NotifyService(kit.service.ServiceBase):
    name = "notify"
    db = Database("notify")
    outbox_model = Outbox
    send = MailerProvider()
    settings = SettingsProvider()
    partners = PartnersProvider()
    retention = RetentionProvider()

    # ------------------------------------------------------------ partner events
    # the names are part of the durable queues' names: never rename them
    on_partner_response_submitted = _partner_event(events.SURVEY, events.RESPONSE_SUBMITTED)
    on_partner_survey_blocked = _partner_event(events.SURVEY, events.SURVEY_BLOCKED)
    on_partner_survey_unblocked = _partner_event(events.SURVEY, events.SURVEY_UNBLOCKED)
    on_partner_organisation_validated = _partner_event(
        events.IDENTITY, events.ORGANISATION_VALIDATED
    )
    on_partner_request_validated = _partner_event(events.CARTE, events.REQUEST_VALIDATED)

    # ------------------------------------------------------------ agency: undelivered e-mails
    @rpc
    def list_undelivered_emails(self, limit: int = 50, offset: int = 0) -> dict:
        """Agency: e-mails given up after the retry window, newest first."""
        return use_cases.list_undelivered(self.db, self.caller, limit, offset)

    @rpc
    def resend_email(self, delivery_id: str) -> dict:
        """Agency: an undelivered e-mail back in the retry queue (sent at the next tick)."""
        return use_cases.resend_undelivered(self.db, self.caller, delivery_id)

    # ------------------------------------------------------------ agency: partners
    @rpc
    def list_event_types(self) -> dict:
        return admin.event_types()

    @rpc
    def create_partner(self, data: dict) -> dict:
        p = self.partners
        return admin.create_partner(self.db, self.caller, data, p.settings, p.provisioner, utcnow())

    @rpc
    def update_partner(self, partner_id: str, data: dict) -> dict:
        p = self.partners
        return admin.update_partner(
            self.db, self.caller, partner_id, data, p.settings, p.provisioner, utcnow()
        )

    @rpc
    def delete_partner(self, partner_id: str) -> dict:
        return admin.delete_partner(self.db, self.caller, partner_id, self.partners.provisioner)

    @rpc
    def get_partner(self, partner_id: str) -> dict:
        return admin.get_partner(self.db, self.caller, partner_id, self.partners.provisioner)

    @rpc
    def list_partners(self) -> dict:
        return admin.list_partners(self.db, self.caller, self.partners.provisioner)

    @rpc
    def create_partner_key(self, partner_id: str, label: str = "") -> dict:
        return admin.create_key(self.db, self.caller, partner_id, label, utcnow())

    @rpc
    def revoke_partner_key(self, partner_id: str, key_id: str) -> dict:
        return admin.revoke_key(self.db, self.caller, partner_id, key_id, utcnow())

    @rpc
    def rotate_webhook_secret(self, partner_id: str) -> dict:
        return admin.rotate_secret(
            self.db, self.caller, partner_id, self.partners.settings, utcnow()
        )

    @rpc
    def list_deliveries(self, filters: dict | None = None) -> dict:
        self.caller.require_agency()
        return admin.deliveries(self.db, filters or {})

    @rpc
    def get_delivery(self, delivery_id: str) -> dict:
        self.caller.require_agency()
        return admin.delivery(self.db, delivery_id)

    @rpc
    def redeliver(self, delivery_id: str) -> dict:
        result = admin.redeliver(self.db, self.caller, delivery_id, utcnow())
        self.partners.wake()
        return result

    @rpc
    def replay_partner(self, partner_id: str, since: str) -> dict:
        result = admin.replay(self.db, self.caller, partner_id, since, utcnow())
        self.partners.wake()
        return result

    @rpc
    def list_partner_audit(self, partner_id: str) -> dict:
        return admin.list_audit(self.db, self.caller, partner_id)

    # ------------------------------------------------------------ the partner (its key)
    @rpc
    def authenticate_partner(self, api_key: str) -> dict:
        return admin.authenticate(self.db, api_key, utcnow())

    @rpc
    def partner_feed(self, api_key: str, after: str | None = None, limit=None) -> dict:
        me = admin.authenticate(self.db, api_key, utcnow())
        return feed.read(self.db, me, after, limit, self.partners.settings, utcnow())

    @rpc
    def partner_deliveries(self, api_key: str, filters: dict | None = None) -> dict:
        me = admin.authenticate(self.db, api_key, utcnow())
        filters = dict(filters or {})
        filters.pop("partner_id", None)
        return admin.deliveries(self.db, filters, partner_id=me["partner_id"])

    @rpc
    def partner_delivery(self, api_key: str, delivery_id: str) -> dict:
        me = admin.authenticate(self.db, api_key, utcnow())
        return admin.delivery(self.db, delivery_id, partner_id=me["partner_id"])

    @rpc
    def export_person(self, emails: list) -> dict:
        """Agency: the e-mails sent to a person's addresses {emails: [{id, to,
        template, subject, status, created_at, sent_at}]} (no bodies).
        Errors: forbidden.agency_only, invalid_input (emails)."""
        return personal_data.export_person(self.db, self.caller, emails)

    @rpc
    def erase_person(self, emails: list) -> dict:
        """Agency: those e-mails' addresses and bodies replaced, unsent ones
        given up. Returns {emails_erased}. Errors: forbidden.agency_only,
        invalid_input (emails)."""
        return personal_data.erase_person(self.db, self.caller, emails)

    @event_handler(events.IDENTITY, events.PERSON_ANONYMISED)
    def on_person_anonymised(self, payload: dict) -> None:
        """identity anonymised an account (retention or request): the e-mails
        sent to its addresses are erased as by erase_person (once per event)."""
        personal_data.person_anonymised(self.db, payload, handler="on_person_anonymised")

    @timer(interval=3600)
    def apply_retention(self) -> None:
        """E-mails sent or given up more than NOTIFY_EMAIL_RETENTION_DAYS ago
        are deleted (notify/personal_data.py; SKIP LOCKED: one replica per row)."""
        personal_data.run_retention(self.db, self.retention)

    @rpc
    def run_retention(self, now: str | None = None) -> dict:
        """System callers (operations, tests): the e-mail retention at once, as
        of ``now`` (ISO-8601, default: the current time). Returns
        {emails_purged}. Errors: forbidden.system_only, invalid_input (now)."""
        return personal_data.run_retention(
            self.db, self.retention, now=system_clock(self.caller, now)
        )

    @timer(interval=3600)
    def purge_partner_feed(self) -> None:
        """Forgets partner events past the retention (PARTNER_FEED_RETENTION_DAYS)."""
        feed.purge(self.db, self.partners.settings, utcnow())

    @event_handler(events.IDENTITY, events.USER_REGISTERED)
    def on_user_registered(self, payload: dict) -> None:
        """To the new user: confirm your address."""
        self._notify(events.USER_REGISTERED, payload)

    @event_handler(events.IDENTITY, events.EMAIL_CONFIRMED)
    def on_email_confirmed(self, payload: dict) -> None:
        """To the organisation's managers, else the agency: a user awaits validation."""
        self._notify(events.EMAIL_CONFIRMED, payload)

    @event_handler(events.IDENTITY, events.USER_VALIDATED)
    def on_user_validated(self, payload: dict) -> None:
        """To the user: your account is validated, sign in."""
        self._notify(events.USER_VALIDATED, payload)

    @event_handler(events.IDENTITY, events.USER_REJECTED)
    def on_user_rejected(self, payload: dict) -> None:
        """To the user: your request was refused, with the reason."""
        self._notify(events.USER_REJECTED, payload)

    @event_handler(events.IDENTITY, events.USER_INVITED)
    def on_user_invited(self, payload: dict) -> None:
        """To the invitee: confirm your address and choose a password."""
        self._notify(events.USER_INVITED, payload)

    @event_handler(events.IDENTITY, events.PASSWORD_RESET_REQUESTED)
    def on_password_reset_requested(self, payload: dict) -> None:
        """To the user: a reset link valid one hour."""
        self._notify(events.PASSWORD_RESET_REQUESTED, payload)

    @event_handler(events.CARTE, events.PROGRAMME_REPORTED)
    def on_programme_reported(self, payload: dict) -> None:
        """To the carte administrators: a programme is missing from the catalogue."""
        self._notify(events.PROGRAMME_REPORTED, payload)

    @timer(interval=use_cases.RETRY_TICK)
    def retry_deliveries(self) -> None:
        """Sends again failed deliveries whose wait is over; gives up (undelivered,
        listed for the agency) after EMAIL_RETRY_WINDOW (use_cases)."""
        use_cases.retry_deliveries(self.db, self.send)
        self.publish_pending()

    def _notify(self, event_type: str, payload: dict) -> None:
        use_cases.notify_event(
            self.db, self.send, self.settings, event_type, payload, handler=f"on_{event_type}"
        )
        self.publish_pending()
