"""The agency's page « Courriels non remis » (/agence/courriels): the e-mails
notify gave up after retrying them for a day (``EMAIL_RETRY_WINDOW``), with
« Renvoyer » to put one back in the retry queue (it is sent at the next tick of
notify's retry timer, retried for a new window if the server still refuses).

Webhook deliveries given up are in the partner delivery log
(/agence/partenaires/livraisons?state=failed), linked from this page.
Calls notify's RPCs ``list_undelivered_emails`` and ``resend_email``; notify
checks the agency role too. The markup is ``gateway/templates/emails/undelivered.html``.
"""

from __future__ import annotations

from flask import Blueprint, redirect, request, url_for

from gateway.pages.agency_surveys import _gate
from gateway.rpc import rpc
from gateway.web import page
from kit.errors import ServiceError

bp = Blueprint("undelivered_email_pages", __name__)

PER_PAGE = 50
TITLE = "Courriels non remis"
DONE = {"renvoye": "Le courriel est programmé : il part dans moins d'une minute."}


def _page_number() -> int:
    try:
        return max(1, int(request.args.get("page", "1")))
    except ValueError:
        return 1


@bp.get("/agence/courriels")
def undelivered():
    if refused := _gate():
        return refused
    number = _page_number()
    error, status = None, 200
    try:
        result = rpc().notify.list_undelivered_emails(PER_PAGE, (number - 1) * PER_PAGE)
    except ServiceError as exc:
        result, error, status = {"items": [], "total": 0}, exc.message, exc.status
    pages = max(1, -(-result["total"] // PER_PAGE))
    return page(
        TITLE,
        template="emails/undelivered.html",
        status=status,
        error=error,
        success=DONE.get(request.args.get("fait", "")),
        result=result,
        number=number,
        pages=pages,
    )


@bp.post("/agence/courriels/<delivery_id>/renvoyer")
def resend(delivery_id):
    if refused := _gate():
        return refused
    try:
        rpc().notify.resend_email(delivery_id)
    except ServiceError as exc:
        if exc.status == 404:  # already sent again (another agent, another tab)
            return redirect(url_for("undelivered_email_pages.undelivered"), code=303)
        raise
    return redirect(url_for("undelivered_email_pages.undelivered", fait="renvoye"), code=303)
