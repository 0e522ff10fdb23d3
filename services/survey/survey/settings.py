"""The survey service's settings, read when the container starts (never at
import time).

``SURVEY_FORM_SECRET`` signs the forms (HMAC-SHA256): only the pre-formatted
form of an organisation is accepted back. It has no default outside local
development (docs/architecture.md §7): with ``APP_ENV`` development or test and no
secret, one is generated once and kept in ``DATA_DIR/survey_form_secret``,
so every local replica and restart agree on it.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from nameko.extensions import DependencyProvider

RELAXED_ENVS = {"development", "dev", "testing", "test"}
MIN_SECRET_LENGTH = 32


class ConfigError(RuntimeError):
    pass


@dataclass(frozen=True)
class SurveySettings:
    form_secret: bytes


def _local_secret(data_dir: Path) -> str:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "survey_form_secret"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as out:
        value = secrets.token_urlsafe(48)
        out.write(value)
    return value


def load(config: dict | None = None, environ=None) -> SurveySettings:
    config = config or {}
    environ = os.environ if environ is None else environ
    secret = config.get("SURVEY_FORM_SECRET") or environ.get("SURVEY_FORM_SECRET")
    app_env = (config.get("APP_ENV") or environ.get("APP_ENV") or "production").strip().lower()
    if not secret:
        if app_env not in RELAXED_ENVS:
            raise ConfigError(
                "SURVEY_FORM_SECRET is required (set APP_ENV=development for a local one)"
            )
        secret = _local_secret(Path(environ.get("DATA_DIR") or "data"))
    if len(secret) < MIN_SECRET_LENGTH:
        raise ConfigError(f"SURVEY_FORM_SECRET must have at least {MIN_SECRET_LENGTH} characters")
    return SurveySettings(form_secret=secret.encode())


class Settings(DependencyProvider):
    def setup(self):
        self.settings = load(self.container.config)

    def get_dependency(self, worker_ctx) -> SurveySettings:
        return self.settings
