"""The notify nameko service: entrypoints only.

Run: ``nameko run --config deploy/nameko.yaml notify.service`` with
``PYTHONPATH=libs/kit:services/notify``. Configuration (container config, else
environment): ``NOTIFY_DB_URL``, ``SMTP_URL`` (default ``smtp://127.0.0.1:8625``,
the local mail catcher), ``MAIL_FROM``, ``PUBLIC_URL`` (base of the links),
``AGENCY_EMAIL`` (France compétences' mailbox).

Surface: no RPC of its own besides ``health``; one handler per identity event
that calls for an e-mail (``on_<event>``: the method name is part of the
durable queue's name, never rename it); emits ``notify.email_failed``
``{source_event_id, template, error, delivery_id, attempts, will_retry}``.
"""

from __future__ import annotations

from nameko.events import event_handler
from nameko.timer import timer

import kit.service  # not `from … import ServiceBase`: see below
from kit import events
from kit.db import Database
from notify import use_cases
from notify.dependencies import MailerProvider, SettingsProvider
from notify.models import Outbox


# `nameko run notify.service` runs every class of this module that has
# entrypoints: ServiceBase itself must not be a name of the module.
class NotifyService(kit.service.ServiceBase):
    name = "notify"
    db = Database("notify")
    outbox_model = Outbox
    send = MailerProvider()
    settings = SettingsProvider()

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

    @timer(interval=30)
    def retry_deliveries(self) -> None:
        """Sends again failed deliveries whose wait is over (at most 5 attempts)."""
        use_cases.retry_deliveries(self.db, self.send)
        self.publish_pending()

    def _notify(self, event_type: str, payload: dict) -> None:
        use_cases.notify_event(
            self.db, self.send, self.settings, event_type, payload, handler=f"on_{event_type}"
        )
        self.publish_pending()
