"""nameko dependency providers: the mailer and the settings, built at setup
from the container config first, then the environment (nothing read at import)."""

from __future__ import annotations

import os

from nameko.extensions import DependencyProvider

from notify.mailer import DEFAULT_MAIL_FROM, DEFAULT_SMTP_URL, Mailer
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
