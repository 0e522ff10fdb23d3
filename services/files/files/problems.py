"""The files service's error catalogue: every code it raises (kit.catalogue).

Refusals of an upload's envelope (``domain.meta.Rejected``) and of access
(``domain.access.Denied``) name their code; their message comes from here. The
OOXML checks (``files.xlsx.*``, ``xlsx_safety``) and the PDF checks
(``files.pdf.*``, ``pdf_safety``) are rows of this catalogue too.
"""

from __future__ import annotations

from kit.catalogue import Catalogue, Entry
from kit.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated, Unavailable

INVALID = InvalidInput.default_message
FIELDS = ("fields",)
# how to make a spreadsheet the checks accept
XLSX_RESAVE = (
    "enregistrez-le à nouveau depuis Excel ou LibreOffice au format « Classeur Excel (.xlsx) » "
    "puis déposez-le"
)
PDF_RESAVE = (
    "enregistrez-le à nouveau avec « Imprimer en PDF » (ou « Exporter en PDF ») depuis votre "
    "logiciel, sans mot de passe, puis déposez-le"
)
NOT_EXCEL = "ce n'est pas un classeur produit par Excel ; " + XLSX_RESAVE + "."
NOT_ORDINARY = "ce n'est pas un classeur ordinaire ; " + XLSX_RESAVE + "."
RESAVE_AGAIN = "puis enregistrez à nouveau."


def _xlsx(name: str, template: str, detail_keys: tuple[str, ...] = (), **variants) -> Entry:
    return Entry(f"files.xlsx.{name}", InvalidInput, template, detail_keys, variants)


CATALOGUE = Catalogue(
    "files",
    [
        # access
        Entry("unauthenticated", Unauthenticated, "Authentification requise."),
        Entry(
            "files.owner_forbidden",
            Forbidden,
            "Vous ne pouvez déposer un fichier que pour votre organisation.",
            variants={"anonymous": "Un dépôt anonyme ne peut pas désigner d'organisation."},
        ),
        Entry("files.forbidden", Forbidden, "Réservé à l'agence et aux appels internes."),
        Entry(
            "files.delete_forbidden",
            Forbidden,
            "Vous n'avez pas les droits pour supprimer ce fichier.",
        ),
        Entry("files.not_found", NotFound, "Fichier introuvable.", ("file_ids",)),
        Entry("files.invalid_input", InvalidInput, INVALID, FIELDS),
        Entry(
            "files.owner_conflict",
            Conflict,
            "Certains fichiers appartiennent déjà à une autre organisation.",
            ("file_ids",),
        ),
        # the envelope of an upload (domain.meta, domain.policy)
        Entry(
            "files.invalid_meta",
            InvalidInput,
            "Les informations du fichier sont invalides.",
            FIELDS,
        ),
        Entry("files.invalid_kind", InvalidInput, "Type de document inconnu.", FIELDS),
        Entry("files.invalid_name", InvalidInput, "Le nom du fichier est invalide.", FIELDS),
        Entry(
            "files.invalid_content_type", InvalidInput, "Le type de contenu est invalide.", FIELDS
        ),
        Entry(
            "files.invalid_owner", InvalidInput, "L'organisation propriétaire est invalide.", FIELDS
        ),
        Entry(
            "files.invalid_encoding", InvalidInput, "Le contenu n'est pas encodé en base64.", FIELDS
        ),
        Entry("files.empty", InvalidInput, "Le fichier est vide.", FIELDS),
        Entry(
            "files.too_large",
            InvalidInput,
            "Le fichier dépasse la taille maximale de {size}.",
            FIELDS,
        ),
        Entry(
            "files.type_not_allowed",
            InvalidInput,
            "Ce type de fichier n'est pas accepté ici : formats acceptés {accepted}. "
            "Le type est reconnu d'après le contenu du fichier, pas d'après son nom.",
            FIELDS,
        ),
        # malware scan (policy)
        Entry(
            "files.malware_detected",
            InvalidInput,
            "Le fichier a été refusé : l'antivirus y a détecté un contenu malveillant. Il n'a pas "
            "été enregistré. Analysez votre poste avec un antivirus à jour, puis déposez une copie "
            "saine du document.",
            ("signature",),
            variants={
                "stored": "Ce fichier a été supprimé : l'antivirus y a détecté un contenu "
                "malveillant après son dépôt. Demandez à la personne qui l'a déposé d'en envoyer "
                "une copie saine.",
            },
        ),
        Entry(
            "files.scanner_unavailable",
            Unavailable,
            "L'analyse antivirus des fichiers est momentanément indisponible : votre fichier n'a "
            "pas été enregistré, déposez-le à nouveau dans quelques minutes.",
            ("retry_after",),
        ),
        # PDF checks (pdf_safety)
        Entry(
            "files.pdf.encrypted",
            InvalidInput,
            "Le PDF est protégé par un mot de passe ou chiffré : " + PDF_RESAVE + ".",
        ),
        Entry(
            "files.pdf.active_content",
            InvalidInput,
            "Le PDF contient du contenu actif ({what}) qui s'exécuterait à l'ouverture : "
            + PDF_RESAVE
            + ".",
        ),
        Entry(
            "files.pdf.embedded_file",
            InvalidInput,
            "Le PDF contient des fichiers joints (pièces incorporées) : retirez-les, ou déposez "
            "chaque document séparément ; " + PDF_RESAVE + ".",
        ),
        Entry(
            "files.pdf.corrupt",
            InvalidInput,
            "Le PDF est endommagé ou illisible : " + PDF_RESAVE + ".",
        ),
        # OOXML checks (xlsx_safety): ``limit_text`` is ``limit`` as French users read it
        _xlsx(
            "empty",
            "Le fichier est vide : vérifiez que vous déposez le bon fichier, enregistré au format "
            ".xlsx.",
        ),
        _xlsx(
            "too_large",
            "Le fichier dépasse la taille maximale de {size} : supprimez les feuilles, lignes ou "
            "images inutiles puis déposez-le à nouveau.",
            ("limit",),
        ),
        _xlsx(
            "not_xlsx",
            "Le fichier « {name} » n'a pas l'extension .xlsx : seuls les classeurs Excel au format "
            ".xlsx sont acceptés ; " + XLSX_RESAVE + ".",
            ("name",),
            content="Le fichier n'est pas un classeur Excel .xlsx (son contenu est d'un autre "
            "type, par exemple un PDF ou un ancien fichier .xls renommé) : " + XLSX_RESAVE + ".",
        ),
        _xlsx(
            "corrupt",
            "Le fichier est endommagé ou incomplet et ne peut pas être lu : ouvrez-le dans Excel, "
            + XLSX_RESAVE
            + ".",
            ("entry", "cell", "row", "error"),
        ),
        _xlsx(
            "too_many_entries",
            "Le fichier contient trop d'éléments internes (plus de {limit_text}) : " + NOT_ORDINARY,
            ("limit",),
        ),
        _xlsx(
            "unsafe_entry_name",
            "Le fichier contient un élément au nom non autorisé (« {entry} ») : " + NOT_EXCEL,
            ("entry",),
        ),
        _xlsx(
            "duplicate_entry",
            "Le fichier contient deux fois l'élément « {entry} » : " + NOT_EXCEL,
            ("entry",),
        ),
        _xlsx(
            "zip_bomb",
            "Le fichier se décompresse en un volume anormal ({reason}) : " + NOT_ORDINARY,
            ("entry", "limit"),
        ),
        _xlsx(
            "macro",
            "Le fichier contient des macros : enregistrez-le au format .xlsx (classeur Excel sans "
            "macros).",
            ("entry", "content_type", "relationship"),
        ),
        _xlsx(
            "external_link",
            "Le fichier contient des liaisons vers d'autres classeurs ou des sources de données "
            "externes : dans Excel, rompez les liaisons (Données > Modifier les liens > Rompre la "
            "liaison) et supprimez les connexions, puis enregistrez-le à nouveau.",
            ("entry", "content_type", "relationship"),
        ),
        _xlsx(
            "embedded_object",
            "Le fichier contient des objets incorporés (objets OLE, contrôles ActiveX ou fichiers "
            "joints) : supprimez-les du classeur, puis enregistrez-le à nouveau au format .xlsx.",
            ("entry", "content_type", "relationship"),
        ),
        _xlsx(
            "xml_entities",
            "Le fichier contient des déclarations XML interdites (DTD ou entités) dans "
            "« {entry} » : " + NOT_EXCEL,
            ("entry",),
        ),
        _xlsx(
            "missing_part",
            "Le fichier n'est pas un classeur Excel complet (la partie « {entry} » manque) : "
            + XLSX_RESAVE
            + ".",
            ("entry",),
        ),
        _xlsx(
            "too_many_sheets",
            "Le classeur contient plus de {limit_text} feuilles : supprimez les feuilles inutiles "
            "puis déposez-le à nouveau.",
            ("limit",),
        ),
        _xlsx(
            "too_many_rows",
            "La feuille « {sheet} » dépasse {limit_text} lignes ({where}) : supprimez les "
            "lignes en trop, même vides ou seulement mises en forme, " + RESAVE_AGAIN,
            ("sheet", "where", "limit"),
        ),
        _xlsx(
            "too_many_columns",
            "La feuille « {sheet} » dépasse {limit_text} colonnes (jusqu'à la colonne "
            "{column} ; {where}) : supprimez les colonnes en trop, même vides ou "
            "seulement mises en forme, " + RESAVE_AGAIN,
            ("sheet", "where", "limit"),
        ),
        _xlsx(
            "cell_too_long",
            "La cellule {cell} de la feuille « {sheet} » dépasse {limit_text} caractères : "
            "raccourcissez son contenu " + RESAVE_AGAIN,
            ("sheet", "cell", "limit"),
            workbook="Un texte du classeur dépasse {limit_text} caractères : raccourcissez les "
            "cellules trop longues " + RESAVE_AGAIN,
        ),
    ],
)
error = CATALOGUE.error
