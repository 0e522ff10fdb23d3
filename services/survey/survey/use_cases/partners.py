"""Partners: a transmission as a partner agency sees it, within its scope."""

from __future__ import annotations

from kit.catalogue import FIELD
from kit.context import PARTNER, Caller
from survey import repository as repo
from survey.domain import form as form_rules
from survey.domain import partners as partner_rules
from survey.errors import CATALOGUE as ERRORS
from survey.schemas import partner_transmission_dict


def require_partner(caller: Caller, scope) -> dict:
    """A partner caller (``kit.context.PARTNER``, set by the gateway once
    notify has authenticated the key) and its scope as notify stores it."""
    caller.require_authenticated()
    if PARTNER not in caller.roles:
        raise ERRORS.error("forbidden.partners_only")
    problem = partner_rules.scope_problem(scope)
    if problem:
        raise ERRORS.error(
            "partner.scope_invalid", variant=FIELD, message=problem, fields={"scope": [problem]}
        )
    return scope


def get_partner_transmission(session, caller: Caller, transmission_id, scope) -> dict:
    """A transmission as a partner agency sees it: the public facts of the
    ``survey.response_submitted`` event, the file's id in files and the
    extracted values (amounts as decimal strings in euros) without the person
    to contact. Unknown and outside the scope are the same 404."""
    scope = require_partner(caller, scope)
    found = repo.transmission_anywhere(session, transmission_id)
    if found is None:
        raise ERRORS.error("survey.transmission_not_found")
    row, survey, campaign, org = found
    if not partner_rules.sees_organisation(
        scope,
        account_type=org.account_type if org else None,
        siret=org.siret if org else None,
    ):
        raise ERRORS.error("survey.transmission_not_found")
    values = form_rules.in_euros(partner_rules.public_values(row.values))
    if "unit" in values:
        values["unit"] = "euros"  # in_euros turned every amount into euros
    return partner_transmission_dict(row, survey, campaign, org, values)
