"""The carte nameko service: entrypoints only (parse, one use case, relay events).

Run: ``nameko run --config deploy/nameko.yaml carte.service`` with
``libs/kit`` and ``services/carte`` on ``PYTHONPATH``. Configuration:
``CARTE_DB_URL`` (else a SQLite file under ``DATA_DIR``).

Every RPC takes the caller from the context data; ``acting`` turns it into
the carte account as identity announced it (``identity.carte_account_saved``,
kept in ``actors``), fetching an account not announced yet once from
identity. Errors: see each method; a request the caller may not see is
``NotFound carte.request_not_found`` exactly as if it did not exist. Every
error code, its class and French message: ``carte.problems``.
"""

from __future__ import annotations

from carte import personal_data
from carte import use_cases as uc
from carte.models import Outbox
from kit import events
from kit import service as kit_service  # not imported by name: nameko run would see it
from kit.db import Database
from kit.entrypoints import rpc
from kit.handlers import event_handler  # retries, then parks (never loses an event)
from kit.rpc import BoundedRpcProxy, SystemRpcProxy


class CarteService(kit_service.ServiceBase):
    name = "carte"
    db = Database("carte")
    outbox_model = Outbox
    upload_methods = ("import_catalogue", "add_annex")  # kit.metrics
    # calls that give up after CARTE_RPC_TIMEOUT (20 s) instead of waiting forever
    identity = BoundedRpcProxy(
        "identity", timeout_setting="CARTE_RPC_TIMEOUT", busy_code="carte.dependency_busy"
    )
    files = SystemRpcProxy(
        "files", timeout_setting="CARTE_RPC_TIMEOUT", busy_code="carte.dependency_busy"
    )

    @property
    def actor(self):
        return uc.acting(self.db, self.caller, self.identity.get_carte_account)

    # -- accounts (copy of identity's) ------------------------------------

    @event_handler(events.IDENTITY, events.CARTE_ACCOUNT_SAVED)
    def on_carte_account_saved(self, payload: dict) -> None:
        """Keeps the newest revision of each carte account (idempotent)."""
        uc.save_account(self.db, payload)

    # -- campaigns ---------------------------------------------------------

    @rpc
    def list_campaigns(self) -> list:
        """Every campaign, newest first: [{id, school_year, label, programming_year,
        opens_on, closes_on, state: open|upcoming|closed, state_label}]."""
        return uc.list_campaigns(self.db, self.actor)

    @rpc
    def get_current_campaign(self) -> dict | None:
        """The open campaign, else the last one opened, else the next; null if none."""
        return uc.current_campaign(self.db, self.actor)

    @rpc
    def create_campaign(self, data: dict) -> dict:
        """Administrators: {school_year, opens_on, closes_on}. Errors:
        carte.campaign_invalid, carte.campaign_exists, carte.campaign_overlap."""
        return uc.create_campaign(self.db, self.actor, data)

    @rpc
    def update_campaign(self, campaign_id: int, data: dict) -> dict:
        """Administrators: new dates. Errors: carte.campaign_not_found,
        carte.campaign_invalid, carte.campaign_overlap."""
        return uc.update_campaign(self.db, self.actor, campaign_id, data)

    # -- catalogue ---------------------------------------------------------

    @rpc
    def import_catalogue(self, file_id: str, name: str) -> dict:
        """Administrators: imports a stored .xlsx/.csv file (all or nothing).
        Returns {diplomas, variants, created, updated, withdrawn}. Errors:
        carte.catalogue_unreadable, carte.catalogue_invalid (details.problems)."""

        def read() -> bytes:
            import base64

            return base64.b64decode(self.files.get_file(file_id)["content_b64"])

        return uc.import_catalogue(self.db, self.actor, name, read)

    @rpc
    def get_catalogue(self, query: str | None = None) -> dict:
        """The tree {levels: [{code, label, diplomas: [{cfd, rncp, title,
        variants: [{id, duration, label}]}]}], variant_count}, searchable."""
        return uc.get_catalogue(self.db, self.actor, query)

    @rpc
    def report_missing_programme(self, data: dict) -> dict:
        """{title, cfd, rncp, reference, message} to the Carif-Oref.
        Errors: carte.report_invalid. Emits carte.programme_reported."""
        result = uc.report_missing_programme(self.db, self.actor, data)
        self.publish_pending()
        return result

    @rpc
    def list_programme_reports(self) -> list:
        """Administrators: the missing programmes reported."""
        return uc.list_programme_reports(self.db, self.actor)

    # -- requests ----------------------------------------------------------

    @rpc
    def dashboard(self) -> dict:
        """{signed_in_as, campaign, can_file, drafts: [...], validated: [...]}
        with the guide's columns. Errors: forbidden.carte_filers_only."""
        return uc.dashboard(self.db, self.actor)

    @rpc
    def new_request_form(self) -> dict:
        """Prefilled fields (referent UAI, school year) and the form's choices."""
        return uc.new_request_form(self.db, self.actor)

    @rpc
    def create_request(self, data: dict) -> dict:
        """First « Sauvegarder »: a draft with its id. Errors: see save_request,
        carte.no_campaign, carte.campaign_not_open, carte.campaign_closed."""
        return uc.create_request(self.db, self.actor, data)

    @rpc
    def save_request(self, request_id: int, data: dict) -> dict:
        """« Sauvegarder »: the whole form. Errors (422 per field): carte.uai_invalid,
        carte.uai_outside_network, carte.diploma_unknown, carte.priority_taken,
        carte.capacity_incoherent, carte.report_too_long,
        carte.linked_request_not_found, carte.request_invalid; carte.request_not_found;
        409 carte.request_validated, carte.request_changed, carte.campaign_closed."""
        return uc.save_request(self.db, self.actor, request_id, data)

    @rpc
    def get_request(self, request_id: int) -> dict:
        """A request the caller can see. Errors: carte.request_not_found."""
        return uc.get_request(self.db, self.actor, request_id)

    @rpc
    def check_request(self, request_id: int) -> dict:
        """« Valider »: every rule; {status: ready, version, request, recap}.
        Errors: carte.request_incomplete (per field), carte.request_validated,
        carte.campaign_closed."""
        return uc.check_request(self.db, self.actor, request_id)

    @rpc
    def confirm_request(self, request_id: int, version: int | None = None) -> dict:
        """« Confirmer »: read-only for good; emits carte.request_validated.
        Errors: as check_request, carte.request_changed."""
        result = uc.confirm_request(self.db, self.actor, request_id, version)
        self.publish_pending()
        return result

    @rpc
    def reorder_priorities(self, uai: str, order: list) -> dict:
        """Ranks the caller's drafts for ``uai`` in ``order`` (request ids).
        Errors: carte.order_invalid, carte.uai_outside_network."""
        return uc.reorder_priorities(self.db, self.actor, uai, order)

    @rpc
    def prepare_annex(self, request_id: int) -> dict:
        """May an annex be added now? Errors: carte.request_validated, carte.annexes_full."""
        return uc.prepare_annex(self.db, self.actor, request_id)

    @rpc
    def add_annex(self, request_id: int, meta: dict) -> dict:
        """Joins a stored file {file_id, name, size, content_type}; returns the request."""
        return uc.add_annex(self.db, self.actor, request_id, meta)

    @rpc
    def remove_annex(self, request_id: int, annex_id: int) -> dict:
        """Errors: carte.annex_not_found, carte.request_validated."""
        return uc.remove_annex(self.db, self.actor, request_id, annex_id)

    @rpc
    def get_annex(self, request_id: int, annex_id: int) -> dict:
        """An annex of a visible request, with its bytes {name, content_type,
        content_b64}. Errors: carte.annex_not_found, carte.request_not_found."""
        found = uc.annex_file(self.db, self.actor, request_id, annex_id)
        stored = self.files.get_file(found["file_id"])
        # served with the type files decided from the bytes, never the client's
        return dict(found, content_type=stored["content_type"], content_b64=stored["content_b64"])

    @rpc
    def print_request(self, request_id: int) -> dict:
        """The print view's sections {title, subtitle, sections, request, signed_in_as}."""
        return uc.print_view(self.db, self.actor, request_id)

    @rpc
    def request_pdf(self, request_id: int) -> dict:
        """The request as a PDF {name, content_type, content_b64}."""
        return uc.request_pdf(self.db, self.actor, request_id)

    # -- partners (DESIGN §8) --------------------------------------------------

    @rpc
    def get_partner_request(self, request_id: int, scope: dict) -> dict:
        """A partner agency reads a validated request. Only the gateway calls
        this, once notify has authenticated the partner's API key
        (``authenticate_partner``): the caller is role ``partner``, user_id
        ``partner:<id>`` (no carte account), and ``scope`` is that partner's
        scope as notify returned it (``kit.partner_scope``, kind carte:
        academy). Output {request_id, status, status_label, campaign_id,
        school_year, school_year_label, filer_kind, referent_uai,
        concerned_uai, department(_label), academy(_label), training_site,
        modality(_label), variant_id, diploma {variant_id, label, cfd, rncp,
        title, duration, level, level_label}, diploma_code, measure(_label),
        linked, linked_request_id, priority, current_capacity, new_capacity,
        first_filing, previous_filing_year, cp_ca_date, recruitment_zones,
        works_needed, works_description, equipment_needed,
        equipment_description, other_impacts, opportunity_report, annex_count,
        validated_at}: never filed_by, the filer's identifier, the manager's
        name, phone or e-mail, nor annex names. Errors: NotFound
        carte.request_not_found (unknown, a draft, or outside the scope),
        Forbidden forbidden.partners_only (not a partner caller), InvalidInput
        partner.scope_invalid (scope not an object of lists)."""
        return uc.get_partner_request(self.db, self.caller, request_id, scope)

    # -- reviewers -----------------------------------------------------------

    @rpc
    def list_validated(self, filters: dict | None = None, page=1, per_page=50) -> dict:
        """Reviewers: {campaign, items, total, page, per_page}; filters academy,
        department, measure, diploma, uai, campaign_id. Errors:
        forbidden.carte_reviewers_only, carte.filter_invalid."""
        return uc.list_validated(self.db, self.actor, filters, page, per_page)

    @rpc
    def export_validated(self, filters: dict | None = None, fmt: str = "xlsx") -> dict:
        """The same list as XLSX or CSV {name, content_type, content_b64, count}."""
        return uc.export_validated(self.db, self.actor, filters, fmt)

    # -- personal data (RGPD; carte/personal_data.py) --------------------------

    @rpc
    def export_person(self, user_id: str) -> dict:
        """Agency: {account, requests (with the named contact), annexes
        (file ids), programme_reports} of a carte account. Errors:
        forbidden.agency_only, unauthenticated."""
        return personal_data.export_person(self.db, self.caller, user_id)

    @rpc
    def erase_person(self, user_id: str) -> dict:
        """Agency: the contact named in the account's requests and its
        reports' messages are replaced; the requests stay. Returns
        {requests_anonymised, reports_anonymised}. Errors: forbidden.agency_only."""
        return personal_data.erase_person(self.db, self.caller, user_id)

    @event_handler(events.IDENTITY, events.PERSON_ANONYMISED)
    def on_person_anonymised(self, payload: dict) -> None:
        """identity anonymised an account (retention or request): the contact
        named in its requests and its reports' messages are replaced (idempotent)."""
        personal_data.person_anonymised(self.db, payload)
