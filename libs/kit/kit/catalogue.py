"""One error catalogue per service (in the spirit of ODK Central's problem.js).

Each service lists, in ``<service>/problems.py``, every error code it raises:
its class (hence its HTTP status), its French message template and the keys
its ``details`` may carry. Raise sites name the code and pass the values::

    raise problems.error("survey.form_unreadable", reason=exc.message)

builds ``InvalidInput("survey.form_unreadable", "Le fichier déposé n'est pas
lisible : …", {})``. A value is used to fill the template's ``{fields}`` and, when
its name is one of the entry's ``detail_keys``, is also put in ``details``
(``fields`` for per-field errors, ``retry_after``, ``reason``…). Detail keys
not passed are left out. A value that is neither a template field nor a detail
key is a programming error (``TypeError``).

A code whose message depends on where it is raised (e.g. the same code for a
form and for a file) keeps its variants in the entry (``variants``), chosen at
the raise site with ``variant=``: the text stays in the catalogue. A variant
may also change the class (``(Unauthenticated, "…")``: identity's
``auth.totp_invalid`` is a 401 at sign-in, a 422 per field at enrolment). One variant
is shared by every entry: ``variant=FIELD`` (``"field"``), for a per-field
error whose title is the message of its one field in error, passed as
``message=`` (e.g. ``error("carte.order_invalid", variant=FIELD,
message=text, fields={"order": [text]})``).

Ownership: a code lives in the catalogue of every service that raises it,
whatever its prefix (identity raises ``carte.identifier_taken`` for the carte
accounts it manages). Codes raised by the gateway itself (``request.*``,
``rate_limited``, ``partner.key_missing``, ``auth.totp_required``…) live in
the gateway (``gateway/gateway/errors.py`` ``CATALOGUE`` and its raise
sites). ``tests/test_error_catalogue.py`` keeps catalogues, raise sites,
``service.py`` docstrings and ``openapi.yaml`` in agreement.

A code that is also given per field in ``details["codes"]`` and becomes the
error's code when every field in error shares it (carte's form problems) is an
entry too, marked ``dynamic``.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from kit.errors import ServiceError

_FORMATTER = string.Formatter()
# the variant of every entry: the title is the message of the one field in error
FIELD = "field"


def _template_fields(template: str) -> set[str]:
    return {name for _, name, _, _ in _FORMATTER.parse(template) if name}


@dataclass(frozen=True)
class Entry:
    """One code: its error class, French message template and detail keys."""

    code: str
    error_class: type[ServiceError]
    template: str
    detail_keys: tuple[str, ...] = ()
    variants: Mapping[str, str | tuple[type[ServiceError], str]] = field(default_factory=dict)
    # raised through a variable (a code chosen at run time): exempt from the
    # "never raised" check of the catalogue test
    dynamic: bool = False

    @property
    def status(self) -> int:
        return self.error_class.status

    def _variant(self, variant: str | None) -> tuple[type[ServiceError], str]:
        if variant is None:
            return self.error_class, self.template
        if variant == FIELD and FIELD not in self.variants:
            return self.error_class, "{message}"
        chosen = self.variants[variant]
        return chosen if isinstance(chosen, tuple) else (self.error_class, chosen)

    def message(self, variant: str | None = None, **params) -> str:
        return self._variant(variant)[1].format(**params)

    def error(self, variant: str | None = None, **params) -> ServiceError:
        error_class, template = self._variant(variant)
        unknown = set(params) - _template_fields(template) - set(self.detail_keys)
        if unknown:
            raise TypeError(f"{self.code}: unexpected values {sorted(unknown)}")
        details = {key: params[key] for key in self.detail_keys if key in params}
        return error_class(self.code, template.format(**params), details)


class Catalogue:
    """The codes of one service, each built by :meth:`error`."""

    def __init__(self, service: str, entries: Iterable[Entry]) -> None:
        self.service = service
        self.entries: dict[str, Entry] = {}
        for entry in entries:
            if entry.code in self.entries:
                raise ValueError(f"{service}: {entry.code} listed twice")
            self.entries[entry.code] = entry

    def __contains__(self, code: object) -> bool:
        return code in self.entries

    def __iter__(self):
        return iter(self.entries.values())

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def codes(self) -> frozenset[str]:
        return frozenset(self.entries)

    def entry(self, code: str) -> Entry:
        try:
            return self.entries[code]
        except KeyError:
            raise LookupError(f"{code} is not in the {self.service} catalogue") from None

    def message(self, code: str, variant: str | None = None, **params) -> str:
        return self.entry(code).message(variant, **params)

    def error(self, code: str, /, variant: str | None = None, **params) -> ServiceError:
        """The exception of ``code``, its template filled with ``params``."""
        return self.entry(code).error(variant, **params)
