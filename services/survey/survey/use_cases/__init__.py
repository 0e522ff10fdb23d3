"""Survey use cases: one function per command or query, one module per feature.

Each takes the SQLAlchemy session and its collaborators as parameters:
``identity`` and ``files`` (proxies of those services, called with the
caller's context), ``secret`` (the form signing key), ``cpu`` (runs CPU-heavy
spreadsheet work off the eventlet hub; a plain call in tests) and ``now``.
No remote call is made while this service holds uncommitted changes
(docs/stack-pitfalls.md §9). Errors are kit.errors classes with stable codes.
Queries live in ``survey.repository``, the shaping of answers in
``survey.schemas``.
"""

from survey.schemas import (
    attachment_dict,
    campaign_dict,
    cert_dict,
    iso,
    required_data_dict,
    survey_row,
    transmission_dict,
)
from survey.use_cases._common import (
    Clock,
    b64,
    direct,
    french_list,
    member_orgs,
    require_member,
)
from survey.use_cases.attachments import (
    add_attachment,
    delete_attachment,
    get_attachment,
    list_attachments,
    replace_attachment,
)
from survey.use_cases.campaigns import create_campaign, get_campaign, list_campaigns
from survey.use_cases.export import export_responses
from survey.use_cases.form import form_notice, generate_form, sheet_password
from survey.use_cases.organisations import (
    MAX_PAGE,
    SYNC_EVERY,
    SYNC_PAGE,
    get_survey,
    list_statuses,
    list_surveys,
    organisations_changed,
    set_blocked,
)
from survey.use_cases.partners import get_partner_transmission, require_partner
from survey.use_cases.required_data import (
    IMPORTED,
    add_certification,
    certification_template,
    certifications_file,
    delete_certification,
    get_required_data,
    import_certifications,
    save_required_data,
    update_certification,
)
from survey.use_cases.transmission import (
    get_response_values,
    get_transmission,
    list_transmissions,
    submit_response,
    transmit,
    validate_form,
)
from survey.use_cases.uploads import prepare_upload

__all__ = [
    "IMPORTED",
    "MAX_PAGE",
    "SYNC_EVERY",
    "SYNC_PAGE",
    "Clock",
    "add_attachment",
    "add_certification",
    "attachment_dict",
    "b64",
    "campaign_dict",
    "cert_dict",
    "certification_template",
    "certifications_file",
    "create_campaign",
    "delete_attachment",
    "delete_certification",
    "direct",
    "export_responses",
    "form_notice",
    "french_list",
    "generate_form",
    "get_attachment",
    "get_campaign",
    "get_partner_transmission",
    "get_required_data",
    "get_response_values",
    "get_survey",
    "get_transmission",
    "import_certifications",
    "iso",
    "list_attachments",
    "list_campaigns",
    "list_statuses",
    "list_surveys",
    "list_transmissions",
    "member_orgs",
    "organisations_changed",
    "prepare_upload",
    "replace_attachment",
    "require_member",
    "require_partner",
    "required_data_dict",
    "save_required_data",
    "set_blocked",
    "sheet_password",
    "submit_response",
    "survey_row",
    "transmission_dict",
    "transmit",
    "update_certification",
    "validate_form",
]
