"""Identity's nameko entrypoints: parse, call one use case, relay its events.

Every method documents its inputs, output and error codes; the caller comes
from the context the gateway sends (kit.context.Caller). Every error code,
its class and French message: ``identity.problems``.
"""

from __future__ import annotations

import logging
import os

import eventlet
from nameko.extensions import DependencyProvider
from nameko.timer import timer
from sqlalchemy.exc import InterfaceError, OperationalError

from identity import carte as carte_accounts
from identity import personal_data, totp, totp_secrets
from identity import use_cases as uc
from identity.models import Outbox
from identity.sirene import SireneClient
from kit import service as kit_service  # not imported by name: nameko run would see it
from kit.context import system_clock
from kit.db import Database
from kit.entrypoints import rpc
from kit.errors import NotFound, Unavailable
from kit.outbox import relay
from kit.rpc import SystemRpcProxy

log = logging.getLogger(__name__)


class SireneProvider(DependencyProvider):
    """The registry client, built from configuration (SIRENE_URL)."""

    def setup(self):
        url = self.container.config.get("SIRENE_URL") or os.environ.get(
            "SIRENE_URL", "http://127.0.0.1:8690"
        )
        self.client = SireneClient(url, timeout=float(os.environ.get("SIRENE_TIMEOUT", "3")))

    def get_dependency(self, worker_ctx):
        return self.client


class AfterReply(DependencyProvider):
    """Work an RPC hands over to run once its reply is sent (nameko sends the
    reply before the worker's teardown): the answer then takes the same time
    whatever the work, so its timing tells nothing about the address asked
    for (docs/architecture.md §4). Each job gets a session of its own (the worker's is
    closed by its own teardown) and its events are relayed at once. The job
    still runs in the worker: a draining service finishes it before stopping."""

    def setup(self):
        self.jobs: dict = {}
        self.database = next(d for d in self.container.dependencies if isinstance(d, Database))

    def get_dependency(self, worker_ctx):
        jobs = self.jobs.setdefault(worker_ctx, [])
        return jobs.append

    def worker_teardown(self, worker_ctx):
        for job in self.jobs.pop(worker_ctx, []):
            self.run(job)

    def run(self, job) -> None:
        """The answer is already given (« confirmation envoyée »): a database
        that drops its links (a restart, a failover, terminated backends) must
        not lose the work. A transient database error is retried with backoff
        (``RETRY_DELAYS``, about 15 s in all) on a fresh session; the jobs are
        idempotent (a registration run again finds its account). Anything else
        is logged and left."""
        for attempt, delay in enumerate((*AFTER_REPLY_RETRY_DELAYS, None), start=1):
            session = self.database.sessionmaker()
            try:
                job(session)
                return
            except Exception as exc:  # noqa: BLE001 - the answer is gone; never kill the service
                if not _transient(exc):
                    log.exception("work after the reply failed")
                    return
                if delay is None:
                    log.exception("work after the reply failed after %d attempts", attempt)
                    return
                log.warning(
                    "work after the reply: database unavailable (%s), attempt %d, again in %.1f s",
                    type(exc).__name__,
                    attempt,
                    delay,
                )
            finally:
                _close(session)
            eventlet.sleep(delay)


def _close(session) -> None:
    try:
        session.close()
    except Exception:  # noqa: BLE001 - a dead link: the pool replaces it
        session.invalidate()


def _transient(exc: Exception) -> bool:
    """A database out of reach for a moment (kit.db answers it as
    ``service.database_unavailable``)."""
    if isinstance(exc, Unavailable):
        return exc.code == "service.database_unavailable"
    return isinstance(exc, (OperationalError, InterfaceError))


# seconds between attempts of work after the reply (7 attempts, ~15 s)
AFTER_REPLY_RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 4.0, 8.0)


class IdentityService(kit_service.ServiceBase):
    name = "identity"
    db = Database("identity")
    totp_keys = totp_secrets.TotpKeys()  # TOTP_ENCRYPTION_KEYS, loaded at start
    outbox_model = Outbox
    sirene = SireneProvider()
    after_reply = AfterReply()
    files = SystemRpcProxy("files", timeout_setting="IDENTITY_RPC_TIMEOUT")

    def defer(self, job) -> None:
        """``job(session)`` once the reply is sent, then its events relayed."""

        def run(session) -> None:
            job(session)
            try:
                relay(
                    session,
                    Outbox,
                    self._publish,
                    service=self.name,
                    on_unroutable=self._declare_consumers,
                )
            except Exception:  # noqa: BLE001 - committed: the 1-second timer relays it
                log.warning("events of the work after the reply left for the relay timer")

        self.after_reply(run)

    # -- registration --------------------------------------------------

    @rpc
    def check_registration(self, data: dict) -> dict:
        """Validates the « Inscription » form and its limits without saving.
        Errors: registration.invalid (per field), registration.too_many_attempts
        (429), registration.too_many_pending (409)."""
        return uc.check_registration(data, self.db)

    @rpc
    def register_organisation(self, data: dict, attachments: list | None = None) -> dict:
        """The « Inscription » form: account_type, siret, nda, uai, apprentice_count,
        last_name, first_name, phone, email, email_confirm, password, password_confirm;
        attachments [{file_id, kind: habilitation|other, name}].
        Returns {status: confirmation_sent}, whether or not the address is known,
        in the same time: the account is made once the answer is sent. A pending
        registration takes no quota slot (the quota applies at validation).
        Errors: registration.invalid, registration.siret_unknown,
        registration.too_many_attempts (429: 3 a day per address),
        registration.too_many_pending (409: 3 pending per organisation)."""
        return uc.register(self.db, data, attachments, self.sirene, defer=self.defer)

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
    def validate_user(self, user_id: str, confirmation: dict | None = None) -> dict:
        """Agency (first accounts) or a manager. ``confirmation`` {confirm: true,
        reason}: required for an organisation closed or unknown in SIRENE (the
        reason is audited). Errors: identity.user_not_found, forbidden.manager_only
        (403, a plain user of the organisation), validation.email_not_confirmed,
        validation.sirene_pending, validation.sirene_closed,
        validation.sirene_unknown (409), validation.reason_required (422),
        validation.closed, quota.users, quota.managers."""
        result = uc.validate_user(self.db, self.caller, user_id, confirmation=confirmation)
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
        """Returns {status, session_id, expires_at, caller, user}; status
        signed_in, or totp_required / totp_enrolment_required (the session is
        then only good for totp_verify_sign_in / the enrolment). Errors:
        auth.invalid_credentials (401), auth.too_many_attempts (429),
        auth.email_not_confirmed / auth.awaiting_validation / auth.account_disabled (403)."""
        return uc.authenticate(self.db, email, password, ip)

    # -- second factor (identity/totp.py) ------------------------------------

    @rpc
    def totp_verify_sign_in(self, session_id: str, code: str, ip: str = "unknown") -> dict:
        """Second step of a sign-in whose status was totp_required: a TOTP code
        or a recovery code. Returns what authenticate returns, for a new
        session. Errors: auth.session_invalid (401), auth.totp_invalid (401),
        auth.totp_replayed (401), auth.totp_too_many_attempts (429);
        auth.totp_unavailable (503: the secret cannot be decrypted)."""
        return totp.verify_sign_in(self.db, session_id, code, ip)

    @rpc
    def totp_begin_enrolment(self, session_id: str) -> dict:
        """A new secret to show as a QR code: {secret, uri, issuer, account}.
        Errors: auth.session_invalid, auth.totp_enrolled (409);
        auth.totp_unavailable (503: the secret cannot be decrypted)."""
        return totp.begin_enrolment(self.db, session_id)

    @rpc
    def totp_confirm_enrolment(self, session_id: str, code: str, ip: str = "unknown") -> dict:
        """The first code turns TOTP on: what authenticate returns (a new
        session) plus recovery_codes (shown once). Errors: auth.session_invalid,
        auth.totp_invalid (422, field code), auth.totp_not_started, auth.totp_enrolled;
        auth.totp_unavailable (503: the secret cannot be decrypted)."""
        return totp.confirm_enrolment(self.db, session_id, code, ip)

    @rpc
    def totp_reauthenticate(self, session_id: str, code: str, ip: str = "unknown") -> dict:
        """A fresh code before a sensitive action: {session_id, expires_at, caller}
        (caller.mfa_at is now). Errors: auth.session_invalid, auth.totp_invalid,
        auth.totp_replayed, auth.totp_too_many_attempts, auth.totp_not_enrolled (403);
        auth.totp_unavailable (503: the secret cannot be decrypted)."""
        return totp.reauthenticate(self.db, session_id, code, ip)

    @rpc
    def totp_disable(self, session_id: str, code: str, ip: str = "unknown") -> dict:
        """Organisation accounts turn TOTP off with a code (a new session).
        Errors: auth.totp_required_for_staff (403), auth.totp_invalid;
        auth.totp_unavailable (503: the secret cannot be decrypted)."""
        return totp.disable(self.db, session_id, code, ip)

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
        """Always the same answer, in the same time (no account enumeration):
        the link is made and sent once the answer is gone."""
        return uc.request_password_reset(self.db, email, defer=self.defer)

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

    @timer(interval=3600)
    def purge_expired_registrations(self) -> None:
        """Self-registrations older than PENDING_REGISTRATION_DAYS (14) and never
        validated go, with their documents (SKIP LOCKED: one replica each)."""
        count = uc.purge_expired_registrations(self.db, self._delete_file)
        if count:
            log.info("expired registrations purged: %d", count)

    @timer(interval=3600)
    def apply_retention(self) -> None:
        """The retention rules of identity/personal_data.py (invitations,
        closed accounts, old links and sessions, published events; SKIP LOCKED:
        one replica each); emits identity.person_anonymised per account anonymised."""
        personal_data.run_retention(self.db, self._delete_file)
        self.publish_pending()

    @rpc
    def run_retention(self, now: str | None = None) -> dict:
        """System callers (operations, tests): runs every retention rule at
        once, as of ``now`` (ISO-8601, default: the current time; a later time
        shows what the periodic job will do then). Returns the counts per rule.
        Errors: forbidden.system_only, invalid_input (now)."""
        result = personal_data.run_retention(
            self.db, self._delete_file, now=system_clock(self.caller, now)
        )
        self.publish_pending()
        return result

    # -- a person's data (RGPD; identity/personal_data.py) ---------------------

    @rpc
    def find_people(self, query: str) -> list:
        """Agency: accounts whose e-mail, name or carte identifier holds
        ``query`` (3 characters at least), as get_person. Errors:
        forbidden.agency_only, invalid_input (query)."""
        return personal_data.find_people(self.db, self.caller, query)

    @rpc
    def get_person(self, user_id: str) -> dict:
        """Agency: an account's row with ``carte_account`` and ``emails`` (the
        addresses the platform wrote to). Errors: identity.user_not_found."""
        return personal_data.get_person(self.db, self.caller, user_id)

    @rpc
    def export_person(self, user_id: str) -> dict:
        """Agency: identity's part of a person's data {account, sessions,
        second_factor, failed_sign_ins, documents [{file_id, kind, name}],
        audit}; audited (personal_data_exported). Errors: identity.user_not_found,
        forbidden.agency_only."""
        return personal_data.export_person(self.db, self.caller, user_id)

    @rpc
    def erase_person(self, user_id: str, reason: str | None = None, check: bool = False) -> dict:
        """Agency, on the person's request: account deactivated and anonymised,
        registration documents deleted, personal values redacted from the audit
        trail (recorded as personal_data_erased). Idempotent. Returns {user_id,
        status: erased, already, documents_deleted, audit_entries_redacted};
        with ``check`` only the checks run ({status: erasable}, nothing changed).
        Emits identity.person_anonymised (reason request) with the erasure.
        Errors: identity.user_not_found, personal_data.own_account (409),
        quota.last_manager (409), forbidden.agency_only."""
        result = personal_data.erase_person(
            self.db, self.caller, user_id, self._delete_file, reason=reason, check=check
        )
        self.publish_pending()
        return result

    def _delete_file(self, file_id: str) -> None:
        try:
            self.files.delete_file(file_id)
        except NotFound:
            pass  # already gone

    @timer(interval=60)
    def retry_sirene(self) -> None:
        """Degraded mode: fetch registry data that was missing at registration."""
        uc.refresh_sirene(self.db, self.sirene)

    # -- carte des formations accounts (identity/use_cases/carte_accounts.py) -----------------

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
        goes to the account's contact e-mail (identity.password_reset_requested),
        made once the answer is gone (same time whatever the identifier)."""
        return carte_accounts.request_password_reset(self.db, identifier, defer=self.defer)

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
