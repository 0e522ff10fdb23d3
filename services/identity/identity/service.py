"""Identity's nameko entrypoints: parse, call one use case, relay its events.

Every method documents its inputs, output and error codes; the caller comes
from the context the gateway sends (kit.context.Caller).
"""

from __future__ import annotations

import os

from nameko.extensions import DependencyProvider
from nameko.timer import timer

from identity import carte as carte_accounts
from identity import use_cases as uc
from identity.models import Outbox
from identity.sirene import SireneClient
from kit import service as kit_service  # not imported by name: nameko run would see it
from kit.db import Database
from kit.entrypoints import rpc


class SireneProvider(DependencyProvider):
    """The registry client, built from configuration (SIRENE_URL)."""

    def setup(self):
        url = self.container.config.get("SIRENE_URL") or os.environ.get(
            "SIRENE_URL", "http://127.0.0.1:8690"
        )
        self.client = SireneClient(url, timeout=float(os.environ.get("SIRENE_TIMEOUT", "3")))

    def get_dependency(self, worker_ctx):
        return self.client


class IdentityService(kit_service.ServiceBase):
    name = "identity"
    db = Database("identity")
    outbox_model = Outbox
    sirene = SireneProvider()

    # -- registration --------------------------------------------------

    @rpc
    def check_registration(self, data: dict) -> dict:
        """Validates the « Inscription » form without saving.
        Errors: registration.invalid (per field)."""
        return uc.check_registration(data)

    @rpc
    def register_organisation(self, data: dict, attachments: list | None = None) -> dict:
        """The « Inscription » form: account_type, siret, nda, uai, apprentice_count,
        last_name, first_name, phone, email, email_confirm, password, password_confirm;
        attachments [{file_id, kind: habilitation|other, name}].
        Returns {status: confirmation_sent}, whether or not the address is known.
        Errors: registration.invalid, registration.siret_unknown, quota.users."""
        result = uc.register(self.db, data, attachments, self.sirene)
        self.publish_pending()
        return result

    @rpc
    def confirm_email(self, token: str) -> dict:
        """Single-use link from the registration e-mail.
        Errors: token.invalid, token.used, token.expired."""
        result = uc.confirm_email(self.db, token)
        self.publish_pending()
        return result

    @rpc
    def list_registrations(self) -> list:
        """Agency: accounts awaiting its validation. Errors: forbidden.agency_only."""
        return uc.list_registrations(self.db, self.caller)

    @rpc
    def validate_user(self, user_id: str) -> dict:
        """Agency (first accounts) or a manager. Errors: identity.user_not_found,
        validation.email_not_confirmed, validation.sirene_pending, validation.closed."""
        result = uc.validate_user(self.db, self.caller, user_id)
        self.publish_pending()
        return result

    @rpc
    def reject_user(self, user_id: str, reason: str) -> dict:
        """Refuses a pending registration with a reason. Errors: invalid_input (reason),
        identity.user_not_found, validation.not_pending."""
        result = uc.reject_user(self.db, self.caller, user_id, reason)
        self.publish_pending()
        return result

    # -- user management ----------------------------------------------------

    @rpc
    def list_users(self, org_id: str | None = None) -> list:
        """« Gestion des utilisateurs » rows. Errors: identity.organisation_not_found."""
        return uc.list_users(self.db, self.caller, org_id)

    @rpc
    def create_user(self, org_id: str, data: dict) -> dict:
        """Manager creates an account {last_name, first_name, email, phone, role, firm_name}.
        Errors: invalid_input, quota.users, quota.managers, user.email_taken,
        organisation.not_validated, identity.organisation_not_found."""
        result = uc.create_user(self.db, self.caller, org_id, data)
        self.publish_pending()
        return result

    @rpc
    def update_user(self, user_id: str, data: dict) -> dict:
        """« Modifier » {last_name, first_name, phone, firm_name, role}.
        Errors: invalid_input, quota.managers, quota.last_manager, identity.user_not_found."""
        return uc.update_user(self.db, self.caller, user_id, data)

    @rpc
    def confirm_user_email(self, user_id: str) -> dict:
        """A manager confirms an address on the user's behalf."""
        return uc.confirm_user_email(self.db, self.caller, user_id)

    @rpc
    def deactivate_user(self, user_id: str) -> dict:
        """Errors: quota.last_manager, identity.user_not_found."""
        result = uc.deactivate_user(self.db, self.caller, user_id)
        self.publish_pending()
        return result

    @rpc
    def accept_invitation(self, token: str, password: str, password_confirm: str) -> dict:
        """Invited user confirms the address and chooses a password.
        Errors: invalid_input, token.invalid, token.used, token.expired."""
        return uc.accept_invitation(self.db, token, password, password_confirm)

    # -- sign-in -----------------------------------------------------------

    @rpc
    def authenticate(self, email: str, password: str, ip: str = "unknown") -> dict:
        """Returns {session_id, expires_at, caller, user}. Errors:
        auth.invalid_credentials (401), auth.too_many_attempts (429),
        auth.email_not_confirmed / auth.awaiting_validation / auth.account_disabled (403)."""
        return uc.authenticate(self.db, email, password, ip)

    @rpc
    def end_session(self, session_id: str) -> dict:
        """Sign-out: revokes the session server-side."""
        return uc.end_session(self.db, self.caller, session_id)

    @rpc
    def revoked_sessions(self, since: str | None = None) -> dict:
        """{now, revoked: [session ids]} revoked since ``since`` (polled by the gateway)."""
        return uc.revoked_sessions(self.db, since)

    @rpc
    def request_password_reset(self, email: str) -> dict:
        """Always the same answer (no account enumeration)."""
        result = uc.request_password_reset(self.db, email)
        self.publish_pending()
        return result

    @rpc
    def reset_password(self, token: str, password: str, password_confirm: str) -> dict:
        """Errors: invalid_input, token.invalid, token.used, token.expired."""
        return uc.reset_password(self.db, token, password, password_confirm)

    @rpc
    def change_password(self, current: str, password: str, password_confirm: str) -> dict:
        """Revokes every session of the user. Errors: invalid_input."""
        return uc.change_password(self.db, self.caller, current, password, password_confirm)

    # -- profile and organisations ----------------------------------------

    @rpc
    def get_me(self) -> dict:
        """The caller's profile and organisation. Errors: unauthenticated."""
        return uc.get_me(self.db, self.caller)

    @rpc
    def get_organisation(self, org_id: str) -> dict:
        """Errors: identity.organisation_not_found."""
        return uc.get_organisation(self.db, self.caller, org_id)

    @rpc
    def list_organisations(
        self, query: str | None = None, status: str | None = None, page: int = 1, per_page: int = 50
    ) -> dict:
        """Agency: {items, total, page, per_page}."""
        return uc.list_organisations(self.db, self.caller, query, status, page, per_page)

    @rpc
    def organisation_history(self, org_id: str) -> list:
        """Agency: the audit trail of an organisation and its accounts."""
        return uc.organisation_history(self.db, self.caller, org_id)

    @rpc
    def set_parent(self, org_id: str, parent_id: str | None) -> dict:
        """Agency: attach a CFA to the OG that manages it."""
        return uc.set_parent(self.db, self.caller, org_id, parent_id)

    @rpc
    def refresh_sirene(self, org_id: str) -> dict:
        """Agency: retry the registry for an organisation in degraded mode."""
        uc.acting_agent(self.db, self.caller)
        return {"resolved": uc.refresh_sirene(self.db, self.sirene, org_id)}

    @timer(interval=60)
    def retry_sirene(self) -> None:
        """Degraded mode: fetch registry data that was missing at registration."""
        uc.refresh_sirene(self.db, self.sirene)

    # -- carte des formations accounts (identity/carte.py) -----------------

    @rpc
    def carte_authenticate(self, identifier: str, password: str, ip: str = "unknown") -> dict:
        """Sign-in by identifier (UAI or code). Returns {session_id, expires_at,
        caller: {user_id, org_id: null, roles: [carte_*], managed_org_ids: []},
        user: carte account}. Errors: auth.invalid_credentials (401),
        auth.too_many_attempts (429), auth.account_disabled (403)."""
        return carte_accounts.authenticate(self.db, identifier, password, ip)

    @rpc
    def carte_request_password_reset(self, identifier: str) -> dict:
        """« Mot de passe perdu »: same answer whatever the identifier; the link
        goes to the account's contact e-mail (identity.password_reset_requested)."""
        result = carte_accounts.request_password_reset(self.db, identifier)
        self.publish_pending()
        return result

    @rpc
    def create_carte_account(self, data: dict) -> dict:
        """Administrators: {kind, identifier, label, contact_email, member_uais,
        referent_uai, scope} → {account, password (shown once)}. Errors:
        carte.account_invalid (per field), carte.identifier_taken (409),
        forbidden.carte_admin_only."""
        result = carte_accounts.create_account(self.db, self.caller, data)
        self.publish_pending()
        return result

    @rpc
    def update_carte_account(self, user_id: str, data: dict) -> dict:
        """Administrators: {label, contact_email, member_uais, referent_uai,
        scope, active}. Errors: carte.account_invalid, carte.account_not_found."""
        result = carte_accounts.update_account(self.db, self.caller, user_id, data)
        self.publish_pending()
        return result

    @rpc
    def regenerate_carte_password(self, user_id: str) -> dict:
        """Administrators: a new issued password {account, password}; sessions closed.
        Errors: carte.account_not_found."""
        return carte_accounts.regenerate_password(self.db, self.caller, user_id)

    @rpc
    def list_carte_accounts(self, kind: str | None = None, query: str | None = None) -> list:
        """Administrators: carte accounts, filtered by kind and identifier/label."""
        return carte_accounts.list_accounts(self.db, self.caller, kind, query)

    @rpc
    def get_carte_account(self, user_id: str) -> dict:
        """The account itself, administrators or system callers.
        Errors: carte.account_not_found, forbidden.carte_admin_only."""
        return carte_accounts.get_account(self.db, self.caller, user_id)

    @rpc
    def get_carte_me(self) -> dict:
        """The signed-in carte account, with « signed_in_as ». Errors:
        unauthenticated, carte.account_not_found."""
        return carte_accounts.me(self.db, self.caller)
