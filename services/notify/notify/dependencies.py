"""nameko dependency providers: the mailer and the settings, built at setup
from the container config first, then the environment (nothing read at import)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from nameko.extensions import DependencyProvider
from sqlalchemy.orm import sessionmaker

from kit.db import database_url, make_engine
from notify.mailer import DEFAULT_MAIL_FROM, DEFAULT_SMTP_URL, Mailer
from notify.partners.amqp import Provisioner, Publisher
from notify.partners.dispatcher import Dispatcher
from notify.partners.settings import PartnerSettings
from notify.personal_data import Retention
from notify.templates import (
    DEFAULT_AGENCY_EMAIL,
    DEFAULT_CARTE_ADMIN_EMAIL,
    DEFAULT_PUBLIC_URL,
    Settings,
)


def setting(config: dict, key: str, default: str) -> str:
    return config.get(key) or os.environ.get(key) or default


class MailerProvider(DependencyProvider):
    """Injects ``Mailer.send``: ``SMTP_URL``, ``MAIL_FROM``."""

    def setup(self):
        config = self.container.config
        self.mailer = Mailer(
            setting(config, "SMTP_URL", DEFAULT_SMTP_URL),
            setting(config, "MAIL_FROM", DEFAULT_MAIL_FROM),
        )

    def get_dependency(self, worker_ctx):
        return self.mailer.send


class SettingsProvider(DependencyProvider):
    """Injects ``templates.Settings``: ``PUBLIC_URL``, ``AGENCY_EMAIL``, ``CARTE_ADMIN_EMAIL``."""

    def setup(self):
        config = self.container.config
        self.settings = Settings(
            public_url=setting(config, "PUBLIC_URL", DEFAULT_PUBLIC_URL),
            agency_email=setting(config, "AGENCY_EMAIL", DEFAULT_AGENCY_EMAIL),
            carte_admin_email=setting(config, "CARTE_ADMIN_EMAIL", DEFAULT_CARTE_ADMIN_EMAIL),
        )

    def get_dependency(self, worker_ctx):
        return self.settings


class RetentionProvider(DependencyProvider):
    """Injects ``personal_data.Retention``: ``NOTIFY_EMAIL_RETENTION_DAYS``
    (default 90). A value that is not a number of days stops the service at
    start rather than keeping e-mails for a length nobody chose."""

    def setup(self):
        config = self.container.config
        self.retention = Retention.read(lambda key, default: setting(config, key, default))

    def get_dependency(self, worker_ctx):
        return self.retention


log = logging.getLogger(__name__)


@dataclass
class Partners:
    """What the partner entrypoints need: settings, the RabbitMQ provisioner
    (None when AMQP is off) and the push loop (``wake`` after an ingest)."""

    settings: PartnerSettings
    provisioner: Provisioner | None
    dispatcher: Dispatcher | None

    def wake(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.wake()


class PartnersProvider(DependencyProvider):
    """The partner interface (notify.partners): settings from the container
    config then the environment (docs/partners-design.md), and the push loop,
    started with the container and stopped with it. The loop has its own
    engine: its sessions are not a worker's."""

    def setup(self):
        config = self.container.config

        def get(key, default):
            return setting(config, key, default)

        self.settings = PartnerSettings.read(get)
        self.provisioner = None
        publisher = None
        if self.settings.amqp:
            self.provisioner = Provisioner(
                self.settings.amqp_uri, self.settings.rabbit_api, self.settings.amqp_public
            )
            publisher = Publisher(self.settings.amqp_uri)
        self.engine = make_engine(config.get("NOTIFY_DB_URL") or database_url("notify"))
        self.dispatcher = Dispatcher(
            sessionmaker(self.engine, expire_on_commit=False), self.settings, publisher
        )

    def start(self):
        if self.provisioner is not None:
            try:
                self.provisioner.ensure_exchange()
            except Exception:  # noqa: BLE001 - retried at the first AMQP partner
                log.warning("partner exchange not declared yet", exc_info=True)
        self.dispatcher.start()

    def stop(self):
        self.dispatcher.stop()
        if self.dispatcher.publisher is not None:
            self.dispatcher.publisher.close()
        self.engine.dispose()

    def kill(self):
        self.stop()

    def get_dependency(self, worker_ctx):
        return Partners(self.settings, self.provisioner, self.dispatcher)
