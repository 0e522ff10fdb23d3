"""The identity service's error catalogue: every code it raises (kit.catalogue).

Identity raises codes of other prefixes too: ``auth.*`` (sign-in, TOTP),
``carte.*`` for the carte accounts it manages. ``quota.*`` and
``validation.sirene_*`` are chosen at run time (``domain.registration``'s
quota problem, the organisation's SIRENE status): marked ``dynamic``.
"""

from __future__ import annotations

from identity.domain.registration import (
    MAX_MANAGERS_PER_ORG,
    MAX_PENDING_PER_ORG,
    MAX_REGISTRATIONS_PER_EMAIL,
    MAX_USERS_PER_ORG,
)
from kit.catalogue import Catalogue, Entry
from kit.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    TooManyRequests,
    Unauthenticated,
    Unavailable,
)

INVALID = InvalidInput.default_message
TOO_MANY_ATTEMPTS = "Trop de tentatives de connexion : réessayez dans {minutes} minute(s)."
LAST_MANAGER = "L'organisme doit garder au moins un gestionnaire de compte."
TOTP_INVALID = (
    "Code incorrect : saisissez le code à 6 chiffres affiché par votre application "
    "d'authentification, ou un code de secours."
)

CATALOGUE = Catalogue(
    "identity",
    [
        Entry("invalid_input", InvalidInput, INVALID, ("fields",)),
        Entry("identity.organisation_not_found", NotFound, "Organisme introuvable."),
        Entry("identity.user_not_found", NotFound, "Utilisateur introuvable."),
        Entry("forbidden.agency_only", Forbidden, "Réservé aux agents de France compétences."),
        Entry(
            "forbidden.manager_only",
            Forbidden,
            "Réservé au gestionnaire de compte de votre organisme.",
        ),
        # links sent by e-mail
        Entry("token.invalid", InvalidInput, "Ce lien n'est pas valide."),
        Entry("token.used", InvalidInput, "Ce lien a déjà été utilisé."),
        Entry("token.expired", InvalidInput, "Ce lien a expiré : demandez-en un nouveau."),
        # registration
        Entry(
            "registration.invalid",
            InvalidInput,
            "Le formulaire d'inscription comporte des erreurs.",
            ("fields",),
        ),
        Entry("registration.siret_unknown", InvalidInput, INVALID, ("fields",)),
        Entry(
            "registration.too_many_attempts",
            TooManyRequests,
            f"Cette adresse e-mail a déjà servi à {MAX_REGISTRATIONS_PER_EMAIL} "
            "demandes d'inscription en 24 heures : réessayez plus tard.",
            ("retry_after",),
        ),
        Entry(
            "registration.too_many_pending",
            Conflict,
            f"Cet organisme a déjà {MAX_PENDING_PER_ORG} inscriptions en attente de "
            "validation : adressez-vous à son gestionnaire de compte, ou réessayez quand "
            "elles auront été traitées.",
        ),
        # validation
        Entry(
            "validation.sirene_closed",
            Conflict,
            "Cet établissement est fermé selon la base SIRENE de l'Insee : confirmez "
            "explicitement la validation en indiquant le motif.",
            ("sirene_status",),
            dynamic=True,
        ),
        Entry(
            "validation.sirene_unknown",
            Conflict,
            "Ce SIRET est inconnu de la base SIRENE de l'Insee : confirmez explicitement "
            "la validation en indiquant le motif.",
            ("sirene_status",),
            dynamic=True,
        ),
        Entry(
            "validation.reason_required",
            InvalidInput,
            "Le motif de la validation est obligatoire.",
            ("fields",),
        ),
        Entry(
            "validation.email_not_confirmed",
            Conflict,
            "L'utilisateur n'a pas encore confirmé son adresse e-mail.",
        ),
        Entry("validation.closed", Conflict, "Ce compte a été refusé ou désactivé."),
        Entry(
            "validation.sirene_pending",
            Conflict,
            "Les données SIRENE de l'organisme n'ont pas encore pu être "
            "récupérées : réessayez quand le registre répondra.",
        ),
        Entry(
            "validation.not_pending",
            Conflict,
            "Seule une inscription en attente de validation peut être refusée.",
        ),
        # users of an organisation
        Entry(
            "quota.users",
            Conflict,
            f"Un organisme compte au plus {MAX_USERS_PER_ORG} comptes utilisateurs : "
            "désactivez-en un avant d'en ajouter un autre.",
            dynamic=True,
        ),
        Entry(
            "quota.managers",
            Conflict,
            f"Un organisme compte au plus {MAX_MANAGERS_PER_ORG} gestionnaires de compte.",
            dynamic=True,
        ),
        Entry(
            "quota.last_manager",
            Conflict,
            LAST_MANAGER,
            variants={
                "erasure": "Cette personne est le seul gestionnaire de compte de son organisme : "
                "désignez d'abord un autre gestionnaire.",
            },
        ),
        Entry(
            "organisation.not_validated",
            Conflict,
            "L'organisme n'est pas encore validé par France compétences.",
        ),
        Entry(
            "user.email_taken",
            Conflict,
            "Cette adresse e-mail est déjà utilisée : une adresse = un utilisateur.",
        ),
        Entry("user.closed", Conflict, "Ce compte a été refusé ou désactivé."),
        # personal data
        Entry(
            "personal_data.own_account",
            Conflict,
            "Vous ne pouvez pas effacer votre propre compte : demandez-le à un autre agent.",
        ),
        # sign-in
        Entry("auth.too_many_attempts", TooManyRequests, TOO_MANY_ATTEMPTS, ("retry_after",)),
        Entry(
            "auth.invalid_credentials",
            Unauthenticated,
            "Adresse e-mail ou mot de passe incorrect.",
            variants={"carte": "Identifiant ou mot de passe incorrect."},
        ),
        Entry(
            "auth.email_not_confirmed",
            Forbidden,
            "Confirmez d'abord votre adresse e-mail (lien reçu par courriel).",
            dynamic=True,
        ),
        Entry(
            "auth.awaiting_validation",
            Forbidden,
            "Votre compte est en attente de validation.",
            dynamic=True,
        ),
        Entry("auth.account_disabled", Forbidden, "Ce compte n'est pas actif."),
        Entry(
            "auth.session_invalid",
            Unauthenticated,
            "Votre session n'est plus valide.",
            variants={"totp": "Votre session n'est plus valide : reconnectez-vous."},
        ),
        # second factor (TOTP)
        Entry(
            "auth.totp_invalid",
            Unauthenticated,
            TOTP_INVALID,
            ("fields",),
            variants={"enrolment": (InvalidInput, TOTP_INVALID)},
        ),
        Entry(
            "auth.totp_replayed",
            Unauthenticated,
            "Ce code a déjà été utilisé : attendez le code suivant de votre application.",
        ),
        Entry(
            "auth.totp_unavailable",
            Unavailable,
            "La double authentification ne peut pas être vérifiée pour le moment : réessayez "
            "plus tard, ou contactez l'assistance si le problème persiste.",
        ),
        Entry(
            "auth.totp_too_many_attempts",
            TooManyRequests,
            "Trop de codes incorrects : réessayez dans {minutes} minute(s).",
            ("retry_after",),
        ),
        Entry(
            "auth.totp_enrolled",
            Conflict,
            "La double authentification est déjà activée pour ce compte.",
        ),
        Entry("auth.totp_not_started", Conflict, "Commencez par afficher le code QR."),
        Entry(
            "auth.totp_not_enrolled",
            Forbidden,
            "La double authentification n'est pas activée pour ce compte.",
        ),
        Entry(
            "auth.totp_required_for_staff",
            Forbidden,
            "La double authentification est obligatoire pour les comptes d'administration.",
        ),
        # carte accounts (managed by identity)
        Entry(
            "forbidden.carte_admin_only",
            Forbidden,
            "Réservé aux administrateurs de la carte des formations.",
        ),
        Entry("carte.account_not_found", NotFound, "Compte introuvable."),
        Entry(
            "carte.account_invalid",
            InvalidInput,
            "Le compte comporte des erreurs : voir les champs.",
            ("fields",),
        ),
        Entry("carte.identifier_taken", Conflict, "Cet identifiant est déjà attribué."),
        Entry("carte.filter_invalid", InvalidInput, "{message}", ("fields",)),
    ],
)
error = CATALOGUE.error
