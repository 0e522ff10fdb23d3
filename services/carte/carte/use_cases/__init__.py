"""Carte use cases: one function per command or query, one module per feature.

Each takes the SQLAlchemy session, the acting account (``Actor``, resolved by
``acting``) and its collaborators (clock, file reader) as parameters, checks
rights and rules itself, commits once, and writes its events to the outbox in
the same transaction. Errors are kit.errors classes with stable ``carte.*``
codes and French messages; a refused command changes nothing. Queries live in
``carte.repository``, the shaping of answers in ``carte.schemas``.
"""

from carte.domain.campaigns import PARIS, today
from carte.schemas import (
    STATUS_LABELS,
    campaign_dict,
    dashboard_row,
    flat_row,
    iso,
    request_dict,
    request_view,
)
from carte.use_cases._common import ADMIN_ONLY, FILERS_ONLY, PARTNERS_ONLY, REVIEWERS_ONLY
from carte.use_cases.actors import acting, save_account
from carte.use_cases.annexes import MAX_ANNEXES, add_annex, annex_file, prepare_annex, remove_annex
from carte.use_cases.campaigns import (
    create_campaign,
    current_campaign,
    list_campaigns,
    update_campaign,
)
from carte.use_cases.catalogue import (
    get_catalogue,
    import_catalogue,
    list_programme_reports,
    report_missing_programme,
)
from carte.use_cases.request_commands import (
    check_request,
    confirm_request,
    create_request,
    get_partner_request,
    get_request,
    reorder_priorities,
    save_request,
)
from carte.use_cases.request_views import dashboard, new_request_form
from carte.use_cases.reviewers import (
    EXPORT_MAX,
    PAGE_MAX,
    REVIEW_CHOICES,
    export_validated,
    list_validated,
    parse_filters,
    print_view,
    request_pdf,
)

__all__ = [
    "ADMIN_ONLY",
    "EXPORT_MAX",
    "FILERS_ONLY",
    "MAX_ANNEXES",
    "PAGE_MAX",
    "PARIS",
    "PARTNERS_ONLY",
    "REVIEWERS_ONLY",
    "REVIEW_CHOICES",
    "STATUS_LABELS",
    "acting",
    "add_annex",
    "annex_file",
    "campaign_dict",
    "check_request",
    "confirm_request",
    "create_campaign",
    "create_request",
    "current_campaign",
    "dashboard",
    "dashboard_row",
    "export_validated",
    "flat_row",
    "get_catalogue",
    "get_partner_request",
    "get_request",
    "import_catalogue",
    "iso",
    "list_campaigns",
    "list_programme_reports",
    "list_validated",
    "new_request_form",
    "parse_filters",
    "prepare_annex",
    "print_view",
    "remove_annex",
    "reorder_priorities",
    "report_missing_programme",
    "request_dict",
    "request_pdf",
    "request_view",
    "save_account",
    "save_request",
    "today",
    "update_campaign",
]
