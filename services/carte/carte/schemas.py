"""Output shaping: the rows of carte turned into the answers of its use cases."""

from __future__ import annotations

import datetime as dt

from carte.domain import access, territory
from carte.domain import requests as form
from carte.domain.access import Actor
from carte.domain.campaigns import today
from carte.models import Annex, Campaign, Request

STATUS_LABELS = {"draft": "En cours de saisie", "validated": "Validée"}


def iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def campaign_dict(campaign: Campaign | None, now: dt.datetime) -> dict | None:
    if campaign is None:
        return None
    day = today(now)
    state = (
        "open"
        if campaign.opens_on <= day <= campaign.closes_on
        else ("upcoming" if day < campaign.opens_on else "closed")
    )
    return {
        "id": campaign.id,
        "school_year": campaign.school_year,
        "label": f"Rentrée {campaign.school_year}",
        "programming_year": f"{campaign.school_year}-{campaign.school_year + 1}",
        "opens_on": campaign.opens_on.isoformat(),
        "closes_on": campaign.closes_on.isoformat(),
        "state": state,
        "state_label": {"open": "Ouverte", "upcoming": "À venir", "closed": "Close"}[state],
    }


def _yes_no(value: bool | None) -> str:
    return "" if value is None else ("Oui" if value else "Non")


def request_dict(req: Request, info, annexes: list[Annex], actor: Actor, campaign: Campaign):
    variant = diploma = level = None
    if info is not None:
        variant, diploma, level = info
    return {
        "id": req.id,
        "status": req.status,
        "status_label": STATUS_LABELS[req.status],
        "version": req.version,
        "campaign_id": req.campaign_id,
        "school_year": campaign.school_year,
        "school_year_label": f"Rentrée {campaign.school_year}",
        "filer_identifier": req.filer_identifier,
        "filer_kind": req.filer_kind,
        "referent_uai": req.referent_uai,
        "concerned_uai": req.concerned_uai,
        "department": req.department,
        "department_label": territory.DEPARTMENTS.get(req.department or ""),
        "academy": req.academy,
        "academy_label": territory.ACADEMY_LABELS.get(req.academy or ""),
        "training_site": req.training_site,
        "manager_name": req.manager_name,
        "manager_phone": req.manager_phone,
        "manager_email": req.manager_email,
        "modality": req.modality,
        "modality_label": form.MODALITIES.get(req.modality or ""),
        "variant_id": req.variant_id,
        "diploma": None
        if variant is None
        else {
            "variant_id": variant.id,
            "label": variant.label,
            "cfd": diploma.cfd,
            "rncp": diploma.rncp,
            "title": diploma.title,
            "duration": variant.duration,
            "level": level.code,
            "level_label": level.label,
        },
        "measure": req.measure,
        "measure_label": form.MEASURES.get(req.measure or ""),
        "linked": req.linked,
        "linked_request_id": req.linked_request_id,
        "priority": req.priority,
        "current_capacity": req.current_capacity,
        "new_capacity": req.new_capacity,
        "first_filing": req.first_filing,
        "previous_filing_year": req.previous_filing_year,
        "cp_ca_date": iso(req.cp_ca_date),
        "recruitment_zones": list(req.recruitment_zones or []),
        "works_needed": req.works_needed,
        "works_description": req.works_description,
        "equipment_needed": req.equipment_needed,
        "equipment_description": req.equipment_description,
        "other_impacts": req.other_impacts,
        "opportunity_report": req.opportunity_report,
        "annexes": [
            {
                "id": a.id,
                "name": a.name,
                "size": a.size,
                "content_type": a.content_type,
                "created_at": iso(a.created_at),
            }
            for a in annexes
        ],
        "editable": req.status == "draft" and access.may_edit(actor, filed_by=req.filed_by),
        "created_at": iso(req.created_at),
        "updated_at": iso(req.updated_at),
        "validated_at": iso(req.validated_at),
    }


def dashboard_row(req, actor: Actor) -> dict:
    """One line of « Liste de vos demandes » from ``repo.dashboard``'s row."""
    editable = req.status == "draft" and access.may_edit(actor, filed_by=req.filed_by)
    return {
        "id": req.id,
        "status": req.status,
        "measure": form.MEASURES.get(req.measure or "", ""),
        "diploma": req.variant_label or "Pas encore saisi",
        "modality": req.modality or "",
        "linked": _yes_no(req.linked) or "Non",
        "linked_request_id": req.linked_request_id,
        "concerned_uai": req.concerned_uai,
        "priority": req.priority,
        "operation": "Continuer la saisie" if editable else "Consulter",
        "editable": editable,
    }


def flat_row(view: dict, annex_count: int | None = None) -> dict:
    """One export line (``export.COLUMNS``)."""
    diploma = view["diploma"] or {}
    zones = ", ".join(form.ZONES[z] for z in view["recruitment_zones"])

    def need(flag, text):
        return f"Oui : {text or ''}".strip() if flag else _yes_no(flag)

    return dict(
        view,
        academy_label=view["academy_label"] or "",
        level_label=diploma.get("level_label"),
        diploma_code=diploma.get("cfd"),
        rncp=diploma.get("rncp"),
        diploma_label=diploma.get("label"),
        linked_label=_yes_no(view["linked"]),
        first_filing_label=_yes_no(view["first_filing"]),
        recruitment_zones_label=zones,
        works_label=need(view["works_needed"], view["works_description"]),
        equipment_label=need(view["equipment_needed"], view["equipment_description"]),
        annex_count=len(view["annexes"]) if annex_count is None else annex_count,
    )


def request_view(view: dict) -> dict:
    """The recap, the print page and the PDF: sections of labelled answers."""

    def item(key, value=None):
        return {"label": form.LABELS[key], "value": view.get(key) if value is None else value}

    diploma = view["diploma"] or {}
    zones = ", ".join(form.ZONES[z] for z in view["recruitment_zones"])
    first = view["first_filing"]
    return {
        "title": f"Demande n° {view['id']} - {view['school_year_label']}",
        "subtitle": (
            f"{view['status_label']}"
            + (f" le {view['validated_at'][:10]}" if view["validated_at"] else "")
            + f" - déposée par {view['filer_identifier']}"
        ),
        "sections": [
            {
                "title": "A/ Établissement de formation",
                "items": [
                    item("referent_uai"),
                    item(
                        "concerned_uai",
                        " - ".join(
                            x
                            for x in (
                                view["concerned_uai"],
                                view["department_label"],
                                view["academy_label"],
                            )
                            if x
                        ),
                    ),
                    item("training_site"),
                    item("manager_name"),
                    item("manager_phone"),
                    item("manager_email"),
                ],
            },
            {
                "title": "B/ Informations sur la formation",
                "items": [
                    item("modality", view["modality_label"] or ""),
                    item(
                        "variant_id",
                        f"{diploma['label']} (code diplôme {diploma['cfd']}"
                        + (f", {diploma['rncp']}" if diploma.get("rncp") else "")
                        + ")"
                        if diploma
                        else "",
                    ),
                    item("measure", view["measure_label"] or ""),
                    item("linked", _yes_no(view["linked"])),
                    item("linked_request_id", view["linked_request_id"] or ""),
                    item("priority", view["priority"] or ""),
                    item("current_capacity", view["current_capacity"]),
                    item("new_capacity", view["new_capacity"]),
                    item("first_filing", _yes_no(first)),
                    item("previous_filing_year", view["previous_filing_year"] or ""),
                    item("cp_ca_date", view["cp_ca_date"] or ""),
                    item("recruitment_zones", zones),
                    item("school_year", f"{view['school_year_label']}"),
                ],
            },
            {
                "title": "Demande de travaux, d'équipements et autres incidences",
                "items": [
                    item("works_needed", _yes_no(view["works_needed"])),
                    item("works_description"),
                    item("equipment_needed", _yes_no(view["equipment_needed"])),
                    item("equipment_description"),
                    item("other_impacts"),
                ],
            },
            {
                "title": "Rapport d'opportunité",
                "items": [item("opportunity_report")],
            },
            {
                "title": "Annexes",
                "items": [
                    {"label": a["name"], "value": f"{a['size']} octets"} for a in view["annexes"]
                ]
                or [{"label": "Aucune annexe", "value": ""}],
            },
        ],
        "footer": f"Plateforme carte des formations - demande n° {view['id']}",
    }
