"""Survey's nameko entrypoints: parse, call one use case, relay its events.

Run: ``nameko run --config deploy/nameko.yaml survey.service`` with
``libs/kit`` and ``services/survey`` on ``PYTHONPATH``. Configuration (nameko
config key or environment variable): ``SURVEY_DB_URL``, ``SURVEY_FORM_SECRET``
(required outside ``APP_ENV=development``), ``SURVEY_RPC_TIMEOUT`` (seconds a
call to identity or files may take, default 20).

Every method reads the caller from the context data (``kit.context``) and
passes it on to identity and files. Codes common to all: ``unauthenticated``;
a survey the caller may not see is ``NotFound survey.not_found``, exactly as
if it did not exist; ``survey.dependency_busy`` (429, ``retry_after``) when
identity or files do not answer in time.
"""

from __future__ import annotations

from nameko.timer import timer

from kit import events
from kit import service as kit_service  # not imported by name: nameko run would see it
from kit.context import system_clock
from kit.cpu import heavy as cpu  # spreadsheet work in a process pool (docs/stack-pitfalls.md §10)
from kit.db import Database
from kit.entrypoints import rpc
from kit.errors import NotFound
from kit.handlers import event_handler  # retries, then parks (never loses an event)
from kit.rpc import BoundedRpcProxy, SystemRpcProxy
from survey import personal_data
from survey import use_cases as uc
from survey.models import Outbox
from survey.settings import Settings


class BoundedRpc(BoundedRpcProxy):
    """Calls to identity and files give up after ``SURVEY_RPC_TIMEOUT`` (20 s)."""

    def __init__(self, target_service, **options):
        super().__init__(
            target_service,
            timeout_setting="SURVEY_RPC_TIMEOUT",
            busy_code="survey.dependency_busy",
            **options,
        )


class SystemRpc(SystemRpcProxy):
    """Calls as the ``system`` caller (the retention job deleting files of
    campaigns past their retention), bounded like ``BoundedRpc``."""

    def __init__(self, target_service, **options):
        super().__init__(
            target_service,
            timeout_setting="SURVEY_RPC_TIMEOUT",
            busy_code="survey.dependency_busy",
            **options,
        )


class SurveyService(kit_service.ServiceBase):
    name = "survey"
    db = Database("survey")
    outbox_model = Outbox
    upload_methods = (  # kit.metrics
        "prepare_upload",
        "submit_response",
        "transmit",
        "import_certifications",
    )
    settings = Settings()
    identity = BoundedRpc("identity")
    files = BoundedRpc("files")
    system_files = SystemRpc("files")

    # -- campaigns (agency) --------------------------------------------------

    @rpc
    def create_campaign(self, data: dict) -> dict:
        """Agency: {name, details, form_type: CFA, direction, online_on,
        transmission_opens_on, return_due_on, closes_on (ISO or JJ/MM/AAAA),
        target: all | OFA | OG} → the campaign.
        Errors: forbidden.agency_only, survey.campaign_invalid (per field)."""
        return uc.create_campaign(self.db, self.caller, data)

    @rpc
    def list_campaigns(self) -> list:
        """Agency: every campaign with its counts per status (every validated
        organisation it is aimed at counted, signed in or not)."""
        return uc.list_campaigns(self.db, self.caller, self.identity)

    @rpc
    def get_campaign(self, campaign_id: str) -> dict:
        """Agency. Errors: survey.campaign_not_found."""
        return uc.get_campaign(self.db, self.caller, campaign_id)

    @rpc
    def set_blocked(self, survey_id: str, blocked: bool) -> dict:
        """Agency blocks or unblocks an organisation's survey (idempotent);
        emits survey.survey_blocked / survey.survey_unblocked."""
        result = uc.set_blocked(self.db, self.caller, survey_id, blocked)
        self.publish_pending()
        return result

    @rpc
    def export_responses(self, campaign_id: str, fmt: str = "xlsx") -> dict:
        """Agency: {name, content_type, content_b64, rows}, fmt xlsx | csv;
        one line per certification × establishment of each organisation's
        latest transmission, a blank one for every other organisation the
        campaign is aimed at. Errors: survey.campaign_not_found,
        survey.invalid_input."""
        return uc.export_responses(self.db, self.caller, campaign_id, fmt, self.identity, cpu)

    @event_handler(events.IDENTITY, events.USER_VALIDATED)
    def on_user_validated(self, payload: dict) -> None:
        """Someone was validated, perhaps a new organisation: the agency's next
        status list, counts or export include it at once."""
        uc.organisations_changed(self.db)

    # -- listings --------------------------------------------------------------

    @rpc
    def list_surveys(self, filters: dict | None = None) -> dict:
        """« Enquêtes en ligne » of the caller's organisation(s): {items,
        total}; filters {sent_from, sent_to}. Creates the organisation's
        surveys of online campaigns aimed at it on first use.
        Errors: survey.organisations_only, survey.filter_invalid."""
        return uc.list_surveys(self.db, self.caller, self.identity, filters)

    @rpc
    def list_statuses(self, filters: dict | None = None) -> dict:
        """« Statut des enquêtes »: {items, page, pages, per_page, total, label};
        filters {blocked, campaign_id, status, q, page, per_page}. The agency
        sees every validated organisation. Errors: survey.filter_invalid."""
        return uc.list_statuses(self.db, self.caller, self.identity, filters)

    @rpc
    def get_survey(self, survey_id: str) -> dict:
        """A survey's line, its transmitted files and attachment count."""
        return uc.get_survey(self.db, self.caller, survey_id)

    # -- « Données à renseigner » ---------------------------------------------

    @rpc
    def get_required_data(self, survey_id: str) -> dict:
        """« Données à renseigner »: both counts, certifications, imported list, missing."""
        return uc.get_required_data(self.db, self.caller, survey_id)

    @rpc
    def save_required_data(self, survey_id: str, data: dict) -> dict:
        """« Enregistrer » {establishments_count, trainings_count,
        certifications?: [rows]}. Errors: survey.required_data_invalid (per
        field), survey.blocked, survey.closed, survey.organisations_only."""
        return uc.save_required_data(self.db, self.caller, survey_id, data)

    @rpc
    def add_certification(self, survey_id: str, data: dict) -> dict:
        """Errors: survey.certification_invalid (per field)."""
        return uc.add_certification(self.db, self.caller, survey_id, data)

    @rpc
    def update_certification(self, survey_id: str, cert_id: str, data: dict) -> dict:
        """Errors: survey.certification_invalid, survey.certification_not_found."""
        return uc.update_certification(self.db, self.caller, survey_id, cert_id, data)

    @rpc
    def delete_certification(self, survey_id: str, cert_id: str) -> dict:
        """Removes a row: {id, deleted}. Errors: survey.certification_not_found."""
        return uc.delete_certification(self.db, self.caller, survey_id, cert_id)

    @rpc
    def import_certifications(self, survey_id: str, file_id: str) -> dict:
        """A list stored by files.store_xlsx (kind certification_list) replaces
        the table. Errors: survey.certifications_invalid (details.problems,
        fields by cell), survey.certifications_unreadable,
        survey.certifications_too_large, survey.file_invalid."""
        return uc.import_certifications(self.db, self.caller, survey_id, file_id, self.files, cpu)

    @rpc
    def certification_template(self) -> dict:
        """« Liste-certifications.xlsx »: {name, content_type, content_b64}."""
        self.caller.require_authenticated()
        return uc.certification_template(cpu)

    @rpc
    def certifications_file(self, survey_id: str) -> dict:
        """« Fichier actuel »: {file_id, name}. Errors: survey.certifications_file_not_found."""
        return uc.certifications_file(self.db, self.caller, survey_id)

    # -- the form -------------------------------------------------------------

    @rpc
    def generate_form(self, survey_id: str, purpose: str = "official") -> dict:
        """{name, content_type, content_b64, form_version}; purpose official |
        working. Emits survey.form_downloaded (official). Errors:
        survey.required_data_incomplete (409, details.missing),
        survey.form_too_large (409: more than 5,000 certification ×
        establishment lines, details.lines)."""
        result = uc.generate_form(
            self.db,
            self.caller,
            survey_id,
            purpose,
            self.identity,
            self.settings.form_secret,
            cpu,
        )
        self.publish_pending()
        return result

    @rpc
    def form_notice(self, survey_id: str) -> dict:
        """The explanatory notice (PDF): {name, content_type, content_b64}."""
        return uc.form_notice(self.db, self.caller, survey_id, cpu)

    @rpc
    def prepare_upload(self, survey_id: str, purpose: str, info: dict) -> dict:
        """Before storing an upload: {store, meta} to pass to files. purpose
        certifications | response | attachment; info {name, size, head_b64,
        replacing?}. Errors: survey.manager_only (403), survey.blocked,
        survey.closed, survey.transmission_not_open (409), survey.xlsx_only,
        files.type_not_allowed, files.too_large, files.empty (422),
        survey.attachments_full (409)."""
        return uc.prepare_upload(self.db, self.caller, survey_id, purpose, info)

    @rpc
    def submit_response(
        self, survey_id: str, file_id: str, idempotency_key: str | None = None
    ) -> dict:
        """« Envoyer »: the filled form stored by files.store_xlsx (kind
        survey_form). Emits survey.response_submitted. Errors (all 422 unless
        said): survey.form_unreadable, survey.form_not_preformatted,
        survey.form_signature_invalid, survey.form_working_copy,
        survey.form_other_organisation, survey.form_other_survey,
        survey.form_structure_changed, survey.form_invalid (details.problems
        « Charges!E12 : … », fields by cell), survey.form_outdated (409),
        survey.manager_only (403), survey.blocked, survey.closed,
        survey.transmission_not_open (409)."""
        result = uc.submit_response(
            self.db,
            self.caller,
            survey_id,
            file_id,
            self.files,
            self.identity,
            self.settings.form_secret,
            cpu,
            idempotency_key=idempotency_key,
        )
        self.publish_pending()
        return result

    @rpc
    def transmit(
        self,
        survey_id: str,
        upload: dict,
        idempotency_key: str | None = None,
        submitter: dict | None = None,
    ) -> dict:
        """« Envoyer » in one call, the way the gateway transmits: upload
        {name, content_b64}; survey checks who may send it here, has files
        check and store it (files.store_xlsx, kind survey_form), then checks
        the form with the bytes in hand and records it. ``submitter`` {name,
        email}: who sends it, from the caller's session token (without it,
        survey asks identity.get_me). Output and errors: those of
        prepare_upload (purpose response), files.store_xlsx and
        submit_response together; a known idempotency key stores nothing."""
        result = uc.transmit(
            self.db,
            self.caller,
            survey_id,
            upload,
            self.files,
            self.identity,
            self.settings.form_secret,
            cpu,
            idempotency_key=idempotency_key,
            submitter=submitter,
        )
        self.publish_pending()
        return result

    @rpc
    def list_transmissions(self, survey_id: str) -> list:
        """« Liste des fichiers transmis »: #, file name, date, name, e-mail."""
        return uc.list_transmissions(self.db, self.caller, survey_id)

    @rpc
    def get_transmission(self, survey_id: str, transmission_id: str) -> dict:
        """One transmission with its file_id. Errors: survey.transmission_not_found."""
        return uc.get_transmission(self.db, self.caller, survey_id, transmission_id)

    @rpc
    def get_response_values(self, survey_id: str, transmission_id: str) -> dict:
        """One transmission with the values extracted from it."""
        return uc.get_response_values(self.db, self.caller, survey_id, transmission_id)

    # -- partners (DESIGN §8) ---------------------------------------------------

    @rpc
    def get_partner_transmission(self, transmission_id: str, scope: dict) -> dict:
        """A partner agency reads a transmission. Only the gateway calls this,
        once notify has authenticated the partner's API key
        (``authenticate_partner``): the caller is role ``partner``, user_id
        ``partner:<id>``, and ``scope`` is that partner's scope as notify
        returned it (``kit.partner_scope``, kind organisations: account_type,
        siret). Output {transmission_id, survey_id, campaign_id,
        campaign_name, siret, uai, account_type, seq, form_version, sha256,
        size, file_name, submitted_at, file_id, values} — values as extracted
        from the form, amounts as decimal strings in euros, without the person
        to contact; never who submitted it. The file's bytes: files.get_file
        (file_id) as the system caller. Errors: NotFound
        survey.transmission_not_found (unknown or outside the scope),
        Forbidden forbidden.partners_only (not a partner caller),
        InvalidInput partner.scope_invalid (scope not an object of lists)."""
        return uc.get_partner_transmission(self.db, self.caller, transmission_id, scope)

    # -- « Pièces à fournir » -------------------------------------------------

    @rpc
    def list_attachments(self, survey_id: str) -> list:
        """« Pièces à fournir »: [{id, name, content_type, size, created_at, updated_at}]."""
        return uc.list_attachments(self.db, self.caller, survey_id)

    @rpc
    def add_attachment(self, survey_id: str, file_id: str) -> dict:
        """Errors: survey.file_invalid, survey.attachments_full."""
        return uc.add_attachment(self.db, self.caller, survey_id, file_id, self.files)

    @rpc
    def replace_attachment(self, survey_id: str, attachment_id: str, file_id: str) -> dict:
        """« Modifier ». Errors: survey.attachment_not_found, survey.file_invalid."""
        return uc.replace_attachment(
            self.db, self.caller, survey_id, attachment_id, file_id, self.files
        )

    @rpc
    def delete_attachment(self, survey_id: str, attachment_id: str) -> dict:
        """« Supprimer », file included: {id, deleted}. Errors: survey.attachment_not_found."""
        return uc.delete_attachment(self.db, self.caller, survey_id, attachment_id, self.files)

    @rpc
    def get_attachment(self, survey_id: str, attachment_id: str) -> dict:
        """« Exporter »: the attachment with its file_id."""
        return uc.get_attachment(self.db, self.caller, survey_id, attachment_id)

    # -- personal data (RGPD; survey/personal_data.py) -----------------------

    @timer(interval=3600)
    def apply_retention(self) -> None:
        """Campaigns past SURVEY_RETENTION_YEARS lose their transmitted files
        and values (SKIP LOCKED: one replica per row)."""
        personal_data.run_retention(self.db, self._delete_file)

    @rpc
    def run_retention(self, now: str | None = None) -> dict:
        """System callers (operations, tests): the retention job at once, as of
        ``now`` (ISO-8601). Returns {transmissions_purged, attachments_purged,
        lists_purged}. Errors: forbidden.system_only, invalid_input (now)."""
        return personal_data.run_retention(
            self.db, self._delete_file, now=system_clock(self.caller, now)
        )

    @rpc
    def export_person(self, user_id: str) -> dict:
        """Agency: {transmissions, attachments} submitted or uploaded by the
        user (file ids, names, dates, kept_until). Errors: forbidden.agency_only."""
        return personal_data.export_person(self.db, self.caller, user_id)

    @rpc
    def erase_person(self, user_id: str) -> dict:
        """Agency: the submitter's name and e-mail copied on their
        transmissions are replaced. Returns {transmissions_anonymised}.
        Errors: forbidden.agency_only."""
        return personal_data.erase_person(self.db, self.caller, user_id)

    @event_handler(events.IDENTITY, events.PERSON_ANONYMISED)
    def on_person_anonymised(self, payload: dict) -> None:
        """identity anonymised an account (retention or request): the name and
        e-mail copied on its transmissions are replaced (idempotent)."""
        personal_data.person_anonymised(self.db, payload)

    def _delete_file(self, file_id: str) -> None:
        try:
            self.system_files.delete_file(file_id)
        except NotFound:
            pass  # already gone
