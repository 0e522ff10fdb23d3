"""The French e-mails the platform sends, one function per identity event.

Pure functions: payload in, ``Email`` values out (no I/O), so each text is
tested on its own. ``TEMPLATES`` is the one visible table from event type to
template. Subjects carry no user-entered text (no header injection, nothing
personal in mail server logs); bodies never carry a password, only
single-use links.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

from kit import events

PLATFORM = "la plateforme des formations"
SIGNATURE = (
    "\n\n-- \n"
    "L'équipe de la plateforme des formations\n"
    "Ce message a été envoyé automatiquement, merci de ne pas y répondre."
)

DEFAULT_PUBLIC_URL = "http://127.0.0.1:8600"
DEFAULT_AGENCY_EMAIL = "agence@localhost"
DEFAULT_CARTE_ADMIN_EMAIL = "carte-admin@localhost"


@dataclass(frozen=True)
class Settings:
    """What the texts need from configuration."""

    public_url: str = DEFAULT_PUBLIC_URL
    agency_email: str = DEFAULT_AGENCY_EMAIL
    carte_admin_email: str = DEFAULT_CARTE_ADMIN_EMAIL

    def link(self, path: str, token: str | None = None) -> str:
        url = self.public_url.rstrip("/") + path
        if token is not None:
            url += "?token=" + urllib.parse.quote(str(token), safe="")
        return url


@dataclass(frozen=True)
class Email:
    template: str
    to: str
    subject: str
    text: str


class PayloadError(ValueError):
    """The event lacks a field its e-mail needs: a contract bug, not a retry case."""


def _field(payload: dict, name: str) -> str:
    value = payload.get(name)
    if not value or not isinstance(value, str):
        raise PayloadError(f"missing field {name!r}")
    return value


def _name(payload: dict) -> str:
    parts = (payload.get("first_name"), payload.get("last_name"))
    return " ".join(p.strip() for p in parts if isinstance(p, str) and p.strip())


def _greeting(payload: dict) -> str:
    name = _name(payload)
    return f"Bonjour {name}," if name else "Bonjour,"


def _person(payload: dict) -> str:
    name, email = _name(payload), payload.get("email") or ""
    return f"{name} ({email})" if name and email else name or email or "Un utilisateur"


def user_registered(payload: dict, settings: Settings) -> list[Email]:
    link = settings.link("/inscription/confirmer", _field(payload, "confirm_token"))
    if payload.get("self_registered") and payload.get("for_existing_org"):
        reviewer = "le gestionnaire de compte de votre organisme"
    else:
        reviewer = "France compétences"
    text = (
        f"{_greeting(payload)}\n\n"
        f"Vous venez de vous inscrire sur {PLATFORM}. Pour activer votre compte, "
        "confirmez votre adresse électronique en ouvrant le lien suivant :\n\n"
        f"{link}\n\n"
        f"Une fois votre adresse confirmée, votre inscription sera examinée par {reviewer}, "
        "qui devra la valider (cela peut prendre quelques jours). Vous recevrez alors "
        "un courriel de confirmation.\n\n"
        "Si vous n'êtes pas à l'origine de cette inscription, ignorez ce message : "
        "aucun compte ne sera activé sans cette confirmation." + SIGNATURE
    )
    return [
        Email(
            events.USER_REGISTERED,
            _field(payload, "email"),
            "Confirmez votre adresse électronique",
            text,
        )
    ]


def email_confirmed(payload: dict, settings: Settings) -> list[Email]:
    sign_in = settings.link("/connexion")
    person = _person(payload)
    managers = [m for m in payload.get("manager_emails") or [] if isinstance(m, str) and m]
    if managers:
        text = (
            "Bonjour,\n\n"
            f"{person} a confirmé son adresse électronique et demande un compte "
            f"utilisateur pour votre organisme sur {PLATFORM}.\n\n"
            "Ce nouvel utilisateur attend votre validation : connectez-vous, puis "
            "vérifiez ses informations et validez ou refusez son compte dans "
            "« Gestion des utilisateurs ».\n\n"
            f"{sign_in}" + SIGNATURE
        )
        subject = "Un nouvel utilisateur attend votre validation"
        return [
            Email("email_confirmed.manager", to, subject, text) for to in dict.fromkeys(managers)
        ]
    text = (
        "Bonjour,\n\n"
        f"{person} a confirmé son adresse électronique : son inscription sur "
        f"{PLATFORM} attend votre validation.\n\n"
        "Connectez-vous pour examiner la demande et les pièces jointes, puis la "
        "valider ou la refuser :\n\n"
        f"{sign_in}" + SIGNATURE
    )
    return [
        Email(
            "email_confirmed.agency",
            settings.agency_email,
            "Une inscription attend votre validation",
            text,
        )
    ]


def user_validated(payload: dict, settings: Settings) -> list[Email]:
    role = ""
    if payload.get("role") == "manager":
        role = (
            "Vous disposez du profil « gestionnaire de compte » : vous pouvez créer, "
            "valider et gérer les comptes des utilisateurs de votre organisme dans "
            "« Gestion des utilisateurs ».\n\n"
        )
    text = (
        f"{_greeting(payload)}\n\n"
        f"Votre compte sur {PLATFORM} a été validé.\n\n"
        f"{role}"
        "Vous pouvez dès à présent vous connecter :\n\n"
        f"{settings.link('/connexion')}" + SIGNATURE
    )
    return [
        Email(events.USER_VALIDATED, _field(payload, "email"), "Votre compte a été validé", text)
    ]


def user_rejected(payload: dict, settings: Settings) -> list[Email]:
    reason = (payload.get("reason") or "").strip() or "Aucun motif n'a été précisé."
    text = (
        f"{_greeting(payload)}\n\n"
        f"Votre demande de compte sur {PLATFORM} n'a pas été acceptée, "
        "pour le motif suivant :\n\n"
        f"{reason}\n\n"
        "Si vous pensez qu'il s'agit d'une erreur, vous pouvez déposer une nouvelle "
        "demande en tenant compte de ce motif." + SIGNATURE
    )
    return [
        Email(
            events.USER_REJECTED,
            _field(payload, "email"),
            "Votre demande de compte n'a pas été acceptée",
            text,
        )
    ]


def user_invited(payload: dict, settings: Settings) -> list[Email]:
    link = settings.link("/invitation", _field(payload, "invite_token"))
    org = (payload.get("org_name") or "").strip()
    where = f", au sein de l'organisme {org}" if org else ""
    text = (
        f"{_greeting(payload)}\n\n"
        f"Un compte a été créé pour vous sur {PLATFORM}{where}.\n\n"
        "Pour l'activer, confirmez votre adresse électronique et choisissez votre "
        "mot de passe en ouvrant le lien suivant :\n\n"
        f"{link}\n\n"
        "Si vous ne vous attendiez pas à ce message, ignorez-le : le compte restera "
        "inactif." + SIGNATURE
    )
    return [
        Email(events.USER_INVITED, _field(payload, "email"), "Un compte a été créé pour vous", text)
    ]


def password_reset_requested(payload: dict, settings: Settings) -> list[Email]:
    link = settings.link("/mot-de-passe/reinitialiser", _field(payload, "reset_token"))
    text = (
        f"{_greeting(payload)}\n\n"
        f"Une réinitialisation du mot de passe de votre compte sur {PLATFORM} a été "
        "demandée. Pour choisir un nouveau mot de passe, ouvrez le lien suivant, "
        "valable 1 heure :\n\n"
        f"{link}\n\n"
        "Si vous n'êtes pas à l'origine de cette demande, ignorez ce message : "
        "votre mot de passe actuel reste inchangé." + SIGNATURE
    )
    return [
        Email(
            events.PASSWORD_RESET_REQUESTED,
            _field(payload, "email"),
            "Réinitialisation de votre mot de passe",
            text,
        )
    ]


def programme_reported(payload: dict, settings: Settings) -> list[Email]:
    """Carte: an establishment reports a programme missing from the catalogue."""
    lines = [
        f"Intitulé : {_field(payload, 'title')}",
        f"Code diplôme : {payload.get('cfd') or 'non précisé'}",
        f"Code RNCP : {payload.get('rncp') or 'non précisé'}",
        f"Signalé par : {payload.get('reporter_label') or ''} "
        f"(identifiant {_field(payload, 'reporter_identifier')})",
    ]
    if payload.get("message"):
        lines.append(f"Message : {payload['message']}")
    text = (
        "Bonjour,\n\n"
        "Une formation a été signalée comme absente du catalogue de la carte des "
        "formations :\n\n" + "\n".join(lines) + "\n\n"
        "Après vérification, ajoutez-la au catalogue (import du catalogue)." + SIGNATURE
    )
    return [
        Email(
            events.PROGRAMME_REPORTED,
            settings.carte_admin_email,
            "Formation manquante signalée dans la carte des formations",
            text,
        )
    ]


# event type -> the service that emits it (the handler subscribes to that one)
SOURCES: dict[str, str] = {
    events.USER_REGISTERED: events.IDENTITY,
    events.EMAIL_CONFIRMED: events.IDENTITY,
    events.USER_VALIDATED: events.IDENTITY,
    events.USER_REJECTED: events.IDENTITY,
    events.USER_INVITED: events.IDENTITY,
    events.PASSWORD_RESET_REQUESTED: events.IDENTITY,
    events.PROGRAMME_REPORTED: events.CARTE,
}

TEMPLATES: dict[str, Callable[[dict, Settings], list[Email]]] = {
    events.USER_REGISTERED: user_registered,
    events.EMAIL_CONFIRMED: email_confirmed,
    events.USER_VALIDATED: user_validated,
    events.USER_REJECTED: user_rejected,
    events.USER_INVITED: user_invited,
    events.PASSWORD_RESET_REQUESTED: password_reset_requested,
    events.PROGRAMME_REPORTED: programme_reported,
}


def render(event_type: str, payload: dict, settings: Settings) -> list[Email]:
    """The e-mails an event causes (``KeyError`` for an unknown type)."""
    return TEMPLATES[event_type](payload, settings)
