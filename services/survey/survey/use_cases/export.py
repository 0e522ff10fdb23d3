"""Agency export: the extracted data of a campaign as xlsx or csv."""

from __future__ import annotations

from kit.context import Caller
from kit.db import utcnow
from survey import repository as repo
from survey import xlsx
from survey.domain import campaigns as rules
from survey.domain import export as export_rules
from survey.errors import CATALOGUE as ERRORS
from survey.schemas import export_record
from survey.use_cases._common import Clock, b64, direct
from survey.use_cases.organisations import _ensure_every_survey


def export_responses(
    session, caller: Caller, campaign_id, fmt: str, identity, cpu=direct, now: Clock = utcnow
) -> dict:
    """The extracted data of every organisation a campaign is aimed at
    (latest transmission each; a blank line for those that sent nothing),
    as ``xlsx`` or ``csv``, safe from formula injection."""
    caller.require_agency()
    if fmt not in ("xlsx", "csv"):
        raise ERRORS.error("survey.invalid_input", fields={"format": ["xlsx ou csv."]})
    if repo.campaign(session, campaign_id) is None:
        raise ERRORS.error("survey.campaign_not_found")
    _ensure_every_survey(session, identity, now())
    campaign = repo.campaign(session, campaign_id)
    rows = repo.survey_rows(session, repo.surveys_query(campaign_id=campaign.id))
    latest = repo.latest_transmissions(session, [s.id for s, _c, _o in rows])
    parents = repo.org_names(session, [o.parent_id for _s, _c, o in rows if o is not None])
    table = []
    for survey, _campaign, org in rows:
        sent = latest.get(survey.id)
        parent_name = parents.get(org.parent_id) if org else None
        table += export_rules.rows_for(export_record(campaign, survey, org, parent_name, sent))
    stamp = now().astimezone(rules.PARIS).strftime("%Y%m%d_%H%M")
    base = f"Export {rules.safe_file_part(campaign.name)} - {stamp}"
    if fmt == "csv":
        return {
            "name": base + ".csv",
            "content_type": "text/csv; charset=utf-8",
            "content_b64": b64(cpu(export_rules.to_csv, table)),
            "rows": len(table),
        }
    content = cpu(
        xlsx.write_table, "Réponses", list(export_rules.HEADERS), export_rules.for_xlsx(table)
    )
    return {
        "name": base + ".xlsx",
        "content_type": xlsx.XLSX_CONTENT_TYPE,
        "content_b64": b64(content),
        "rows": len(table),
    }
