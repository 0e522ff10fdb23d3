"""The partner interface's configuration (docs/partners-design.md), read once
at setup from the container config, else the environment."""

from __future__ import annotations

from dataclasses import dataclass, field

from notify.partners import delivery, ssrf


@dataclass(frozen=True)
class PartnerSettings:
    public_url: str = "http://127.0.0.1:8600"
    retention_days: int = 90  # PARTNER_FEED_RETENTION_DAYS
    webhook_timeout: float = 10.0  # WEBHOOK_TIMEOUT (seconds)
    allowed: ssrf.Allowed = field(default_factory=ssrf.Allowed)  # WEBHOOK_ALLOWED_HOSTS
    development: bool = False  # APP_ENV=development: http accepted
    disable_after_days: float = 5.0  # WEBHOOK_DISABLE_AFTER_DAYS
    secret_overlap_hours: float = 24.0  # WEBHOOK_SECRET_OVERLAP_HOURS
    schedule: tuple[float, ...] = delivery.SCHEDULE  # WEBHOOK_RETRY_SCHEDULE
    per_partner: int = 4  # PARTNER_CONCURRENCY: pushes in flight per partner and channel
    amqp_uri: str | None = None  # PARTNER_AMQP_URI (off when unset)
    rabbit_api: str | None = None  # PARTNER_RABBIT_API
    amqp_public: str | None = None  # PARTNER_AMQP_PUBLIC_URI
    agency_email: str = "agence@localhost"
    resolve: ssrf.Resolver = ssrf.system_resolver

    @property
    def amqp(self) -> bool:
        return bool(self.amqp_uri and self.rabbit_api)

    def check_url(self, url: str) -> ssrf.Target:
        return ssrf.check(url, self.allowed, self.development, self.resolve)

    @classmethod
    def read(cls, get) -> PartnerSettings:
        """``get(key, default)`` reads one setting."""
        return cls(
            public_url=get("PUBLIC_URL", cls.public_url),
            retention_days=int(get("PARTNER_FEED_RETENTION_DAYS", "90")),
            webhook_timeout=float(get("WEBHOOK_TIMEOUT", "10")),
            allowed=ssrf.Allowed.parse(get("WEBHOOK_ALLOWED_HOSTS", "")),
            development=get("APP_ENV", "production") == "development",
            disable_after_days=float(get("WEBHOOK_DISABLE_AFTER_DAYS", "5")),
            secret_overlap_hours=float(get("WEBHOOK_SECRET_OVERLAP_HOURS", "24")),
            schedule=delivery.parse_schedule(get("WEBHOOK_RETRY_SCHEDULE", "")),
            per_partner=max(1, int(get("PARTNER_CONCURRENCY", "4"))),
            amqp_uri=get("PARTNER_AMQP_URI", "") or None,
            rabbit_api=get("PARTNER_RABBIT_API", "") or None,
            amqp_public=get("PARTNER_AMQP_PUBLIC_URI", "") or None,
            agency_email=get("AGENCY_EMAIL", cls.agency_email),
        )
