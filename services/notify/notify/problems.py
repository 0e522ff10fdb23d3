"""The notify service's error catalogue: every code it raises (kit.catalogue).

``partner.event_type_unknown`` and ``partner.webhook_url_invalid`` (and
``partner.scope_invalid`` when saving a partner) are the code of a partner that
cannot be saved when every field in error shares that code: chosen at run time.
"""

from __future__ import annotations

from kit.catalogue import Catalogue, Entry
from kit.errors import BadRequest, Conflict, Gone, InvalidInput, NotFound, Unauthenticated

INVALID = InvalidInput.default_message
# the message of a partner that cannot be saved (create or update)
SAVE = {"save": "Le partenaire ne peut pas être enregistré."}

CATALOGUE = Catalogue(
    "notify",
    [
        Entry("invalid_input", InvalidInput, INVALID, ("fields",)),
        Entry("email.not_undelivered", NotFound, "Ce courriel n'est pas (ou plus) en échec."),
        # partners: administration by the agency
        Entry("partner.invalid_input", InvalidInput, INVALID, ("fields",), SAVE),
        Entry("partner.event_type_unknown", InvalidInput, SAVE["save"], ("fields",), SAVE, True),
        Entry("partner.webhook_url_invalid", InvalidInput, SAVE["save"], ("fields",), SAVE, True),
        Entry(
            "partner.scope_invalid",
            InvalidInput,
            INVALID,
            ("fields",),
            {**SAVE, "scope": "Le périmètre du partenaire est invalide."},
        ),
        Entry("partner.filter_invalid", InvalidInput, INVALID, ("fields",)),
        Entry("partner.not_found", NotFound, "Partenaire introuvable."),
        Entry("partner.key_not_found", NotFound, "Clé d'API introuvable."),
        Entry("partner.delivery_not_found", NotFound, "Livraison introuvable."),
        Entry("partner.key_invalid", Unauthenticated, "Clé d'API inconnue ou révoquée."),
        Entry(
            "partner.amqp_unavailable",
            Conflict,
            "Le canal AMQP des partenaires n'est pas configuré ou ne répond pas : "
            "réessayez plus tard.",
            ("reason",),
        ),
        Entry(
            "partner.too_many_keys",
            Conflict,
            "Ce partenaire a déjà {max_keys} clés actives : révoquez-en une avant d'en créer.",
        ),
        Entry("partner.no_webhook", Conflict, "Ce partenaire n'a pas de webhook."),
        Entry("partner.disabled", Conflict, "Ce partenaire est désactivé : réactivez-le d'abord."),
        Entry(
            "partner.webhook_disabled",
            Conflict,
            "Le webhook de ce partenaire est désactivé : réactivez-le.",
        ),
        # partners: the feed
        Entry(
            "partner.cursor_invalid",
            BadRequest,
            "Curseur invalide : reprenez avec un curseur rendu par le flux.",
        ),
        Entry(
            "partner.limit_invalid",
            BadRequest,
            "Le paramètre limit doit être un entier entre 1 et {max_limit}.",
        ),
        Entry(
            "partner.cursor_expired",
            Gone,
            "Ce curseur est antérieur à la durée de conservation du flux "
            "({retention_days} jours) : reprenez depuis le début du flux.",
        ),
    ],
)
error = CATALOGUE.error
