"""Errors that cross the RPC bus typed.

nameko serialises an exception as its dotted path plus ``args``; classes
registered with ``deserialize_to_instance`` come back as instances of the same
class on the caller's side instead of a ``RemoteError``. Every class keeps its
arguments JSON-safe: ``(code, message, details as a JSON string)``, because
nameko turns every non-string scalar inside ``args`` into a string.

The ``code`` is a stable dotted identifier clients can rely on (documented in
the gateway's OpenAPI document); ``message`` is French, for people; ``details``
is a dict (e.g. per-field errors ``{"fields": {"siret": [...]}}``).
"""

from __future__ import annotations

import json

from nameko.exceptions import deserialize_to_instance


class ServiceError(Exception):
    """Base of every expected, typed error."""

    status = 400
    default_code = "error"
    default_message = "La demande n'a pas pu être traitée."

    def __init__(
        self, code: str | None = None, message: str | None = None, details: dict | str | None = None
    ):
        self.code = code or self.default_code
        self.message = message or self.default_message
        if isinstance(details, str):  # as it crossed the bus
            try:
                details = json.loads(details)
            except ValueError:
                details = {}
        self.details = details if isinstance(details, dict) else {}
        # nameko stringifies every non-string scalar inside args: ship details as JSON
        super().__init__(self.code, self.message, json.dumps(self.details, default=str))

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@deserialize_to_instance
class InvalidInput(ServiceError):
    status = 422
    default_code = "invalid_input"
    default_message = "Certaines données sont invalides."

    @classmethod
    def fields(
        cls, errors: dict[str, list[str]], code: str = "invalid_input", message: str | None = None
    ) -> InvalidInput:
        """Per-field errors, all at once: ``{"siret": ["SIRET invalide."]}``."""
        return cls(code, message or cls.default_message, {"fields": errors})


@deserialize_to_instance
class NotFound(ServiceError):
    status = 404
    default_code = "not_found"
    default_message = "Ressource introuvable."


@deserialize_to_instance
class Conflict(ServiceError):
    status = 409
    default_code = "conflict"
    default_message = "L'opération est en conflit avec l'état actuel."


@deserialize_to_instance
class Forbidden(ServiceError):
    status = 403
    default_code = "forbidden"
    default_message = "Vous n'avez pas les droits nécessaires."


@deserialize_to_instance
class Unauthenticated(ServiceError):
    status = 401
    default_code = "unauthenticated"
    default_message = "Authentification requise."


@deserialize_to_instance
class TooManyRequests(ServiceError):
    """``details["retry_after"]`` gives the seconds to wait."""

    status = 429
    default_code = "too_many_requests"
    default_message = "Trop de tentatives, réessayez plus tard."


@deserialize_to_instance
class BadRequest(ServiceError):
    """A malformed request parameter that is not a form field (e.g. a cursor)."""

    status = 400
    default_code = "bad_request"
    default_message = "Requête mal formée."


@deserialize_to_instance
class Gone(ServiceError):
    """What existed is no longer kept (e.g. a feed cursor past the retention)."""

    status = 410
    default_code = "gone"
    default_message = "Cette ressource n'est plus disponible."


@deserialize_to_instance
class Unavailable(ServiceError):
    """A dependency (database, registry, another service) cannot answer now:
    503, with ``details["retry_after"]`` in seconds. Never a 500."""

    status = 503
    default_code = "service.unavailable"
    default_message = "Le service est momentanément indisponible, réessayez dans quelques instants."


ERROR_CLASSES = (
    InvalidInput,
    NotFound,
    Conflict,
    Forbidden,
    Unauthenticated,
    TooManyRequests,
    BadRequest,
    Gone,
    Unavailable,
)


class FieldErrors:
    """Collects per-field messages so that every problem is reported at once."""

    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}

    def add(self, field: str, message: str) -> None:
        self.errors.setdefault(field, []).append(message)

    def __bool__(self) -> bool:
        return bool(self.errors)

    def raise_if_any(self, code: str = "invalid_input") -> None:
        if self.errors:
            raise InvalidInput.fields(self.errors, code)
