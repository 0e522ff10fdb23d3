"""Output shaping: the rows of survey turned into the answers of its use cases."""

from __future__ import annotations

import datetime as dt

from survey.domain import campaigns as rules
from survey.domain import certifications as cert_rules
from survey.models import Attachment, Campaign, Certification, Survey, Transmission


def iso(value) -> str | None:
    return value.isoformat() if value else None


def campaign_dict(campaign: Campaign, counts: dict | None = None) -> dict:
    data = {
        "id": campaign.id,
        "name": campaign.name,
        "details": campaign.details,
        "form_type": campaign.form_type,
        "form_label": f"{campaign.form_type} - {campaign.form_type}",
        "direction": campaign.direction,
        "online_on": iso(campaign.online_on),
        "transmission_opens_on": iso(campaign.transmission_opens_on),
        "return_due_on": iso(campaign.return_due_on),
        "closes_on": iso(campaign.closes_on),
        "target": campaign.target,
        "target_label": rules.TARGET_LABELS[campaign.target],
        "created_at": iso(campaign.created_at),
    }
    if counts is not None:
        data["counts"] = counts
    return data


def missing_data(survey: Survey, certs: list[Certification]) -> list[str]:
    """What « Données à renseigner » still lack (domain.certifications.download_gate)."""
    return cert_rules.download_gate(
        survey.establishments_count,
        survey.trainings_count,
        [(c.code, c.establishments) for c in certs],
    )


def cert_dict(cert: Certification) -> dict:
    return {
        "id": cert.id,
        "code": cert.code,
        "title": cert.title,
        "rncp": cert.rncp,
        "level": cert.level,
        "type": cert.type,
        "establishments": cert.establishments,
    }


def required_data_dict(survey: Survey, certs: list[Certification]) -> dict:
    missing = missing_data(survey, certs)
    return {
        "survey_id": survey.id,
        "establishments_count": survey.establishments_count,
        "trainings_count": survey.trainings_count,
        "certifications": [cert_dict(c) for c in certs],
        "certifications_file": (
            {
                "name": survey.certifications_file_name,
                "imported_at": iso(survey.certifications_imported_at),
            }
            if survey.certifications_file_id
            else None
        ),
        "template_name": cert_rules.TEMPLATE_NAME,
        "complete": not missing,
        "missing": missing,
    }


def survey_row(
    survey: Survey, campaign: Campaign, org, parent_name: str | None, today: dt.date, complete=None
) -> dict:
    """A line of « Enquêtes en ligne » (the guide's columns) and of the status list."""
    return {
        "id": survey.id,
        "campaign_id": campaign.id,
        "name": campaign.name,
        "details": campaign.details,
        "form": f"{campaign.form_type} - {campaign.form_type}",
        "org_id": survey.org_id,
        "organisation": org.name if org is not None else None,
        "parent": parent_name,
        "direction": campaign.direction,
        "online_on": iso(campaign.online_on),
        "transmission_opens_on": iso(campaign.transmission_opens_on),
        "return_due_on": iso(campaign.return_due_on),
        "closes_on": iso(campaign.closes_on),
        "last_sent_at": iso(survey.last_sent_at),
        "status": survey.status,
        "status_label": rules.STATUS_LABELS[survey.status],
        "blocked": survey.blocked,
        "transmission": rules.transmission_state(
            campaign.transmission_opens_on, campaign.closes_on, today
        ),
        "required_data_complete": complete,
        "updated_at": iso(survey.updated_at),
    }


def transmission_dict(row: Transmission) -> dict:
    return {
        "id": row.id,
        "number": row.seq,
        "file_name": row.file_name,
        "submitted_at": iso(row.submitted_at),
        "submitter_name": row.submitter_name,
        "submitter_email": row.submitter_email,
        "form_version": row.form_version,
        "size": row.size,
    }


def attachment_dict(row: Attachment) -> dict:
    return {
        "id": row.id,
        "name": row.name,
        "content_type": row.content_type,
        "size": row.size,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


def partner_transmission_dict(row: Transmission, survey: Survey, campaign: Campaign, org, values):
    """A transmission as a partner agency sees it (``values``: the public ones, in euros)."""
    return {
        "transmission_id": row.id,
        "survey_id": survey.id,
        "campaign_id": campaign.id,
        "campaign_name": campaign.name,
        "siret": org.siret if org else None,
        "uai": org.uai if org else None,
        "account_type": org.account_type if org else None,
        "seq": row.seq,
        "form_version": row.form_version,
        "sha256": row.sha256,
        "size": row.size,
        "file_name": row.file_name,
        "submitted_at": iso(row.submitted_at),
        "file_id": row.file_id,
        "values": values,
    }


def export_record(
    campaign: Campaign, survey: Survey, org, parent_name: str | None, sent: Transmission | None
) -> dict:
    """What ``domain.export.rows_for`` turns into the export's lines of one survey."""
    return {
        "campaign": campaign.name,
        "organisation": {
            "name": org.name if org else None,
            "siret": org.siret if org else None,
            "uai": org.uai if org else None,
            "nda": org.nda if org else None,
            "account_type": org.account_type if org else None,
            "parent_name": parent_name,
        },
        "status_label": rules.STATUS_LABELS[survey.status],
        "blocked": survey.blocked,
        "last_sent_at": (
            survey.last_sent_at.astimezone(rules.PARIS).strftime("%d/%m/%Y %H:%M:%S")
            if survey.last_sent_at
            else ""
        ),
        "file_name": sent.file_name if sent else "",
        "values": sent.values if sent else None,
    }
