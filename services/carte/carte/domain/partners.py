"""What a partner agency (DESIGN §8) may read of a carte request.

A partner sees the validated requests of the academies its scope names
(``kit.partner_scope``, kind carte), and of each only the project: where,
what, how many places, when. Nothing that names or reaches a person — the
filer's account, the project manager's name, phone and e-mail, who
validated it — nor the annexes' file names (counted only). The fields are
listed, not filtered out: a field added to requests stays private until it
is added here.
"""

from __future__ import annotations

from kit import partner_scope

VALIDATED = "validated"

# keys of ``use_cases.request_dict`` a partner receives as they are
PUBLIC_FIELDS = (
    "status",
    "status_label",
    "campaign_id",
    "school_year",
    "school_year_label",
    "filer_kind",
    "referent_uai",
    "concerned_uai",
    "department",
    "department_label",
    "academy",
    "academy_label",
    "training_site",
    "modality",
    "modality_label",
    "variant_id",
    "diploma",
    "measure",
    "measure_label",
    "linked",
    "linked_request_id",
    "priority",
    "current_capacity",
    "new_capacity",
    "first_filing",
    "previous_filing_year",
    "cp_ca_date",
    "recruitment_zones",
    "works_needed",
    "works_description",
    "equipment_needed",
    "equipment_description",
    "other_impacts",
    "opportunity_report",
    "validated_at",
)


# one check for every service (kit.partner_scope)
scope_problem = partner_scope.problem


def sees(scope: dict, *, status: str, academy: str | None) -> bool:
    """A validated request of an academy within the scope (drafts: never)."""
    return status == VALIDATED and partner_scope.matches(
        scope, partner_scope.CARTE, {"academy": academy}
    )


def partner_view(full: dict) -> dict:
    """``request_dict``'s output reduced to what a partner receives."""
    diploma = full.get("diploma") or {}
    return {
        "request_id": full["id"],
        **{key: full.get(key) for key in PUBLIC_FIELDS},
        "diploma_code": diploma.get("cfd"),
        "annex_count": len(full.get("annexes") or ()),
    }
