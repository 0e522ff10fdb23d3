"""Gateway settings, read from the environment when the app is created.

Nothing is read at import time: ``create_app`` calls :func:`load`, so tests and
gunicorn workers each get the configuration of their own environment. Every
value has a safe local default except ``SESSION_SECRET``, which production must
provide (docs/architecture.md §7: no secret has a default outside local development).
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_SERVICES = ("identity", "survey", "files", "carte", "notify")
RELAXED_ENVS = {"development", "dev", "testing", "test"}

# One random secret per process when none is given in development, so that
# several apps created by one process (tests) agree with each other.
_dev_secret: str | None = None


class ConfigError(RuntimeError):
    """A missing or malformed setting; the message names the variable."""


def _number(env: Mapping[str, str], name: str, default: float, kind=float) -> Any:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return kind(default)
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{name} must not be negative, got {raw!r}")
    return value


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def _list(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> list[str]:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """Settings from environment variables (no validation of secrets here)."""
    return {
        "APP_ENV": env.get("APP_ENV", "production").strip().lower() or "production",
        "AMQP_URI": env.get("AMQP_URI") or "amqp://guest:guest@127.0.0.1:5672/",
        # seconds an RPC may take before the gateway answers 504
        "RPC_TIMEOUT": _number(env, "RPC_TIMEOUT", 5.0),
        "HEALTH_RPC_TIMEOUT": _number(env, "HEALTH_RPC_TIMEOUT", 1.0),
        # idle clients kept per process and per timeout (gthread: 8 threads)
        "RPC_POOL_MAX_IDLE": _number(env, "RPC_POOL_MAX_IDLE", 16, int),
        # seconds the gateway trusts a service's RPC consumer count (0 consumers:
        # an immediate 503 without sending the call)
        "RPC_CONSUMER_CHECK_SECONDS": _number(env, "RPC_CONSUMER_CHECK_SECONDS", 1.0),
        # seconds authenticated requests are served with a revocation list that
        # could not be refreshed from identity; older, they fail closed with 503
        # auth.unavailable (gateway.auth)
        "REVOCATION_MAX_STALENESS": _number(env, "REVOCATION_MAX_STALENESS", 300.0),
        "REVOCATION_POLL_SECONDS": _number(env, "REVOCATION_POLL_SECONDS", 1.0),
        "MAX_CONTENT_LENGTH": _number(env, "MAX_CONTENT_LENGTH", 12 * 1024 * 1024, int),
        "MAX_JSON_BYTES": _number(env, "MAX_JSON_BYTES", 64 * 1024, int),
        "SESSION_SECRET": env.get("SESSION_SECRET") or None,
        "PUBLIC_URL": (env.get("PUBLIC_URL") or "http://127.0.0.1:8600").rstrip("/"),
        "SERVICES": _list(env, "SERVICES", DEFAULT_SERVICES),
        # number of reverse proxies in front of the gateway whose
        # X-Forwarded-For entries are trusted (0: use the socket address)
        "TRUSTED_PROXIES": _number(env, "TRUSTED_PROXIES", 0, int),
        "RATELIMIT_ENABLED": _flag(env, "RATELIMIT_ENABLED", True),
        "RATELIMIT_MAX_KEYS": _number(env, "RATELIMIT_MAX_KEYS", 10_000, int),
    }


def load(
    env: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Environment, then ``overrides`` (``test_config``), then checks."""
    global _dev_secret
    settings = from_env(os.environ if env is None else env)
    settings.update(overrides or {})

    relaxed = settings.get("TESTING") or settings["APP_ENV"] in RELAXED_ENVS
    if not settings.get("SESSION_SECRET"):
        if not relaxed:
            raise ConfigError(
                "SESSION_SECRET is required (set APP_ENV=development for a random local one)"
            )
        if _dev_secret is None:
            _dev_secret = secrets.token_urlsafe(32)
            log.warning(
                "SESSION_SECRET is not set: using a random secret for this process; "
                "sessions will not survive a restart or be shared between workers"
            )
        settings["SESSION_SECRET"] = _dev_secret
    # Flask signs its own cookies with SECRET_KEY
    settings.setdefault("SECRET_KEY", settings["SESSION_SECRET"])

    for name in ("RPC_TIMEOUT", "HEALTH_RPC_TIMEOUT", "REVOCATION_POLL_SECONDS"):
        if not settings[name] > 0:
            raise ConfigError(f"{name} must be positive")
    if settings["REVOCATION_MAX_STALENESS"] < 2 * settings["REVOCATION_POLL_SECONDS"]:
        raise ConfigError("REVOCATION_MAX_STALENESS must be at least twice REVOCATION_POLL_SECONDS")
    if settings["MAX_JSON_BYTES"] > settings["MAX_CONTENT_LENGTH"]:
        raise ConfigError("MAX_JSON_BYTES must not exceed MAX_CONTENT_LENGTH")
    return settings
