"""Event names and payload fields: the contract between emitters and consumers.

A nameko event is (source service, event type); the full name is
``<service>.<event_type>``. Payloads are JSON: ids, ISO-8601 UTC times, and
always ``event_id`` (for idempotent consumers) and ``occurred_at``. Fields may
be added, never renamed or removed.
"""

IDENTITY = "identity"

# identity.user_registered: {user_id, org_id, email, first_name, last_name,
#   confirm_token, self_registered: bool, for_existing_org: bool}
USER_REGISTERED = "user_registered"
# identity.email_confirmed: {user_id, org_id, email, first_name, last_name,
#   manager_emails: [..] (who must validate; empty means the agency)}
EMAIL_CONFIRMED = "email_confirmed"
# identity.user_validated: {user_id, org_id, email, first_name, last_name, role}
USER_VALIDATED = "user_validated"
# identity.user_rejected: {user_id, org_id, email, first_name, last_name, reason}
USER_REJECTED = "user_rejected"
# identity.user_invited: {user_id, org_id, email, first_name, last_name,
#   invite_token, org_name}
USER_INVITED = "user_invited"
# identity.password_reset_requested: {user_id, email, first_name, last_name,
#   reset_token}
PASSWORD_RESET_REQUESTED = "password_reset_requested"
# identity.organisation_validated: {org_id, siret, uai, nda, account_type, name,
#   parent_id, validated_at} (an organisation's first validation by the agency;
#   public facts only: it goes to partners)
ORGANISATION_VALIDATED = "organisation_validated"
# identity.user_deactivated: {user_id, org_id}
USER_DEACTIVATED = "user_deactivated"
# identity.person_anonymised: {user_id, emails: [the addresses the account had,
#   lower case, no duplicates], reason: retention | request} (an account
#   anonymised by retention or erased on request: consumers erase their copies
#   of the person's name and e-mail; identity drops the row once published)
PERSON_ANONYMISED = "person_anonymised"

NOTIFY = "notify"
# notify.email_failed: {source_event_id, template, error}
EMAIL_FAILED = "email_failed"

FILES = "files"
# files.file_stored: {file_id, sha256, size, kind, owner_org_id}
FILE_STORED = "file_stored"

# identity.carte_account_saved: {user_id, identifier, kind (establishment |
#   network | draaf | reviewer | admin), label, uai, referent_uai,
#   member_uais: [..], scope (reviewers: all | montpellier | toulouse | draaf),
#   active: bool, revision: int (grows with every change)}
CARTE_ACCOUNT_SAVED = "carte_account_saved"

CARTE = "carte"
# carte.request_validated: {request_id, campaign_id, school_year, concerned_uai,
#   referent_uai, academy, department, measure, modality, diploma_code,
#   variant_id, filed_by, validated_at}
REQUEST_VALIDATED = "request_validated"
# carte.programme_reported: {report_id, title, cfd, rncp, message, reporter_identifier,
#   reporter_label, reference} (stored by carte; notify e-mails CARTE_ADMIN_EMAIL)
PROGRAMME_REPORTED = "programme_reported"

SURVEY = "survey"
# survey.form_downloaded: {survey_id, campaign_id, org_id, user_id, form_version}
#   (each download of the official, locked form)
FORM_DOWNLOADED = "form_downloaded"
# survey.response_submitted: {survey_id, campaign_id, org_id, transmission_id, seq,
#   file_id, file_name, sha256, size, form_version, submitted_by, submitted_at,
#   siret, uai, account_type, campaign_name}
#   (values stay in the survey service: ask it with the ids)
RESPONSE_SUBMITTED = "response_submitted"
# survey.survey_blocked / survey.survey_unblocked: {survey_id, campaign_id, org_id, by,
#   siret, uai, account_type, campaign_name, at}
SURVEY_BLOCKED = "survey_blocked"
SURVEY_UNBLOCKED = "survey_unblocked"

# Announced for observers and consumed by no service of the platform: the
# outbox publishes these without ``mandatory`` (nobody listening is not an
# alarm, and they are not kept for anyone). Every other event type must reach
# a durable queue or its row stays pending and is counted (kit.outbox). A test
# checks that each event type above is either consumed or listed here.
UNCONSUMED = frozenset(
    {
        (IDENTITY, USER_DEACTIVATED),
        (NOTIFY, EMAIL_FAILED),
        (FILES, FILE_STORED),
        (SURVEY, FORM_DOWNLOADED),
    }
)
