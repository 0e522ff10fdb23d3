"""The carte service's error catalogue: every code it raises (kit.catalogue).

A form's problems (``domain.requests.Problems``) carry one code per field,
listed in ``details["codes"]``; when every field in error shares one code, that
code is the error's, its title the field's message (``variant=FIELD``): those
field codes are entries marked ``dynamic``.
"""

from __future__ import annotations

from kit.catalogue import Catalogue, Entry
from kit.errors import Conflict, Forbidden, InvalidInput, NotFound, TooManyRequests, Unauthenticated
from kit.rpc import BUSY_MESSAGE

INVALID = InvalidInput.default_message
PER_FIELD = ("fields", "codes")


def _field(code: str) -> Entry:
    """A code given per field; the error's code when every field shares it."""
    return Entry(code, InvalidInput, "{message}", PER_FIELD, dynamic=True)


CATALOGUE = Catalogue(
    "carte",
    [
        Entry("invalid_input", InvalidInput, INVALID, ("fields",)),
        Entry("auth.session_invalid", Unauthenticated, "Votre session n'est plus valide."),
        Entry("forbidden.agency_only", Forbidden, "Réservé aux agents de France compétences."),
        Entry(
            "forbidden.carte_account_required",
            Forbidden,
            "Réservé aux comptes de la carte des formations.",
        ),
        Entry(
            "forbidden.carte_filers_only",
            Forbidden,
            "Réservé aux établissements, à leurs réseaux et aux services de la DRAAF.",
        ),
        Entry(
            "forbidden.carte_reviewers_only",
            Forbidden,
            "Réservé aux relecteurs (Région, académies, DRAAF) et aux administrateurs.",
        ),
        Entry(
            "forbidden.partners_only",
            Forbidden,
            "Réservé aux partenaires authentifiés par leur clé d'API.",
        ),
        Entry(
            "forbidden.carte_admin_only",
            Forbidden,
            "Réservé aux administrateurs de la carte des formations.",
        ),
        # raised by kit.rpc for the services carte calls (identity, files)
        Entry(
            "carte.dependency_busy", TooManyRequests, BUSY_MESSAGE, ("retry_after",), dynamic=True
        ),
        # campaigns
        Entry(
            "carte.campaign_invalid", InvalidInput, "La campagne comporte des erreurs.", PER_FIELD
        ),
        Entry("carte.campaign_exists", Conflict, "La campagne de la rentrée {year} existe déjà."),
        Entry(
            "carte.campaign_overlap",
            Conflict,
            "Ces dates chevauchent la campagne de la rentrée {school_year}.",
        ),
        Entry("carte.campaign_not_found", NotFound, "Campagne introuvable."),
        Entry("carte.no_campaign", Conflict, "Aucune campagne de dépôt n'est ouverte."),
        Entry(
            "carte.campaign_not_open",
            Conflict,
            "La campagne de la rentrée {school_year} ouvre le {opens_on:%d/%m/%Y}.",
        ),
        Entry(
            "carte.campaign_closed",
            Conflict,
            "La campagne de la rentrée {school_year} est close depuis le {closes_on:%d/%m/%Y} : "
            "les demandes ne peuvent plus être enregistrées ni validées.",
        ),
        # catalogue of programmes, reports
        Entry("carte.catalogue_unreadable", InvalidInput, "{reason}"),
        Entry(
            "carte.catalogue_invalid",
            InvalidInput,
            "Le fichier comporte {count} erreur(s) : rien n'a été importé.",
            ("problems",),
        ),
        Entry(
            "carte.report_invalid", InvalidInput, "Le signalement comporte des erreurs.", PER_FIELD
        ),
        # requests
        Entry("carte.request_not_found", NotFound, "Demande introuvable."),
        Entry(
            "carte.request_invalid",
            InvalidInput,
            "La demande comporte des erreurs : voir les champs.",
            PER_FIELD,
        ),
        Entry(
            "carte.request_incomplete",
            InvalidInput,
            "La demande est incomplète ou comporte des erreurs : corrigez les champs signalés.",
            PER_FIELD,
        ),
        Entry(
            "carte.request_validated",
            Conflict,
            "La demande n° {request_id} est validée : elle ne peut plus être modifiée.",
        ),
        Entry(
            "carte.request_changed",
            Conflict,
            "La demande a été modifiée entre-temps : rechargez-la avant de continuer.",
        ),
        Entry("carte.priority_taken", InvalidInput, "{message}", PER_FIELD),
        Entry("carte.order_invalid", InvalidInput, "{message}", PER_FIELD),
        Entry("carte.uai_outside_network", InvalidInput, "{message}", PER_FIELD),
        # annexes
        Entry("carte.annexes_full", Conflict, "{max_annexes} annexes au plus par demande."),
        Entry("carte.annex_invalid", InvalidInput, "{message}", PER_FIELD),
        Entry("carte.annex_not_found", NotFound, "Annexe introuvable."),
        # reviewers
        Entry("carte.filter_invalid", InvalidInput, "Filtres invalides.", PER_FIELD),
        Entry("carte.format_invalid", InvalidInput, "Format d'export : xlsx ou csv."),
        Entry(
            "carte.export_too_large",
            InvalidInput,
            "Plus de {limit} demandes : affinez les filtres.",
        ),
        # partners
        Entry("partner.scope_invalid", InvalidInput, "{message}", ("fields",)),
        # per-field codes of the request form (domain.requests)
        *(
            _field(f"carte.{name}")
            for name in (
                "capacity_incoherent",
                "capacity_invalid",
                "cfd_invalid",
                "choice_invalid",
                "date_invalid",
                "diploma_unknown",
                "email_invalid",
                "field_invalid",
                "field_required",
                "field_too_long",
                "linked_request_not_found",
                "phone_invalid",
                "priority_invalid",
                "report_too_long",
                "rncp_invalid",
                "uai_invalid",
                "year_invalid",
            )
        ),
    ],
)
error = CATALOGUE.error
