"""The survey service's error catalogue: every code it raises (kit.catalogue).

Named ``errors`` (not ``problems``, as in the other services) because
``survey.domain.problems`` already holds the problems of a form or a list;
raise sites import it as ``ERRORS``. Attachments refused before upload
(``domain.attachments.Refused``) carry files' codes (``files.empty``…) with
survey's messages. ``errors_label`` is ``domain.problems.count_label``.
"""

from __future__ import annotations

from kit.catalogue import Catalogue, Entry
from kit.errors import Conflict, Forbidden, InvalidInput, NotFound, TooManyRequests
from kit.rpc import BUSY_MESSAGE

INVALID = InvalidInput.default_message
FIELDS = ("fields",)
# domain.problems.details
LISTED = ("fields", "problems", "count", "truncated")

CATALOGUE = Catalogue(
    "survey",
    [
        Entry("invalid_input", InvalidInput, INVALID, FIELDS),
        # raised by kit.rpc for the services survey calls (identity, files)
        Entry(
            "survey.dependency_busy", TooManyRequests, BUSY_MESSAGE, ("retry_after",), dynamic=True
        ),
        Entry("survey.not_found", NotFound, "Enquête introuvable."),
        Entry("survey.campaign_not_found", NotFound, "Enquête introuvable."),
        Entry("survey.transmission_not_found", NotFound, "Fichier transmis introuvable."),
        Entry("survey.organisations_only", Forbidden, "Réservé aux organismes de formation."),
        Entry(
            "survey.manager_only",
            Forbidden,
            "Seuls les gestionnaires de compte peuvent déposer le formulaire d'enquête ; les "
            "autres utilisateurs peuvent le télécharger et le préparer.",
        ),
        Entry(
            "survey.blocked",
            Conflict,
            "Cette enquête est bloquée par France compétences : aucune modification ni "
            "transmission n'est possible. Contactez France compétences.",
        ),
        Entry(
            "survey.closed",
            Conflict,
            "L'enquête est close depuis le {closes_on} : elle ne peut plus être modifiée ni "
            "transmise.",
        ),
        Entry(
            "survey.transmission_not_open",
            Conflict,
            "La transmission de cette enquête ouvrira le {opens_on}.",
        ),
        Entry("survey.campaign_invalid", InvalidInput, "L'enquête comporte des erreurs.", FIELDS),
        Entry("survey.filter_invalid", InvalidInput, INVALID, FIELDS),
        Entry("survey.invalid_input", InvalidInput, INVALID, FIELDS),
        # data to fill in, certifications
        Entry("survey.required_data_invalid", InvalidInput, INVALID, FIELDS),
        Entry(
            "survey.required_data_incomplete",
            Conflict,
            "Le téléchargement de l'enquête est bloqué tant que les données à renseigner ne sont "
            "pas complètes : renseignez {missing_label} (« Données à renseigner »).",
            ("missing",),
        ),
        Entry(
            "survey.certification_invalid",
            InvalidInput,
            "La certification comporte des erreurs.",
            FIELDS,
        ),
        Entry("survey.certification_not_found", NotFound, "Certification introuvable."),
        Entry(
            "survey.certifications_unreadable",
            InvalidInput,
            "Le fichier n'a pas pu être lu : {reason}",
        ),
        Entry(
            "survey.certifications_too_large",
            InvalidInput,
            "La liste des certifications dépasse les limites acceptées.",
            LISTED,
        ),
        Entry(
            "survey.certifications_invalid",
            InvalidInput,
            "La liste des certifications comporte {errors_label} : corrigez le fichier puis "
            "importez-le à nouveau. Aucune donnée n'a été modifiée.",
            LISTED,
        ),
        Entry(
            "survey.certifications_file_not_found",
            NotFound,
            "Aucune liste n'a encore été importée.",
        ),
        Entry(
            "survey.file_invalid",
            InvalidInput,
            INVALID,
            FIELDS,
            {
                "form_missing": "Le fichier déposé est introuvable : déposez-le à nouveau.",
                "form_mismatch": "Le fichier déposé ne correspond pas à cette enquête.",
                "document_missing": "Le document déposé est introuvable.",
                "document_mismatch": "Le document ne correspond pas à cette enquête.",
            },
        ),
        # the form
        Entry(
            "survey.busy",
            Conflict,
            "Le formulaire est en cours de génération : réessayez.",
            variants={"transmission": "Transmission simultanée : réessayez dans un instant."},
        ),
        Entry(
            "survey.form_too_large",
            Conflict,
            "Le formulaire compterait {lines} lignes (une par certification et par "
            "établissement où elle est délivrée) : {max_lines} au plus. Réduisez la "
            "liste des certifications ou leurs nombres d'établissements.",
            ("lines", "max_lines"),
        ),
        Entry("survey.xlsx_only", InvalidInput, "Format accepté : .xlsx", FIELDS),
        Entry(
            "survey.form_unreadable",
            InvalidInput,
            "Le fichier déposé n'est pas lisible : {reason}",
        ),
        Entry(
            "survey.form_structure_changed",
            InvalidInput,
            "Le formulaire préformaté a été modifié en dehors des cellules de saisie.",
            LISTED,
            {
                "listed": "Le formulaire préformaté a été modifié en dehors des cellules de "
                "saisie ({errors_label}) : téléchargez-le à nouveau ou corrigez ces cellules.",
            },
        ),
        Entry(
            "survey.form_not_preformatted",
            InvalidInput,
            "Ce fichier n'est pas le formulaire d'enquête préformaté : téléchargez-le depuis "
            "« Enquêtes en ligne », complétez-le puis déposez-le.",
        ),
        Entry(
            "survey.form_signature_invalid",
            InvalidInput,
            "La signature du formulaire est invalide : le fichier a été modifié en dehors des "
            "cellules prévues. Téléchargez à nouveau le formulaire.",
        ),
        Entry(
            "survey.form_working_copy",
            InvalidInput,
            "Ce fichier est la version de travail du formulaire : seul le formulaire préformaté "
            "peut être déposé. Reportez-y vos chiffres.",
        ),
        Entry(
            "survey.form_other_organisation",
            InvalidInput,
            "Ce formulaire a été préparé pour un autre organisme : déposez le formulaire de "
            "votre organisme.",
        ),
        Entry(
            "survey.form_other_survey",
            InvalidInput,
            "Ce formulaire appartient à une autre enquête : déposez le formulaire de cette "
            "enquête.",
        ),
        Entry(
            "survey.form_outdated",
            Conflict,
            "Vos données à renseigner ont changé depuis le téléchargement de ce formulaire : "
            "téléchargez le nouveau formulaire et reportez-y vos chiffres.",
        ),
        Entry(
            "survey.form_invalid",
            InvalidInput,
            "Le formulaire comporte {errors_label} : corrigez-les puis déposez-le à nouveau.",
            LISTED,
        ),
        # attachments (« pièces à fournir »)
        Entry(
            "files.type_not_allowed",
            InvalidInput,
            "Type de document refusé : formats acceptés {accepted}.",
            FIELDS,
        ),
        Entry("files.empty", InvalidInput, "Le document est vide.", FIELDS),
        Entry(
            "files.too_large",
            InvalidInput,
            "Le document dépasse la taille maximale de {size}.",
            FIELDS,
        ),
        Entry(
            "survey.attachments_full",
            Conflict,
            "{max_attachments} pièces au plus par enquête : supprimez-en une.",
        ),
        Entry("survey.attachment_not_found", NotFound, "Pièce introuvable."),
        # partners
        Entry(
            "forbidden.partners_only",
            Forbidden,
            "Réservé aux partenaires authentifiés par leur clé d'API.",
        ),
        Entry("partner.scope_invalid", InvalidInput, "{message}", FIELDS),
    ],
)
error = CATALOGUE.error
