"""The push loop: takes due deliveries, sends them, records each attempt.

One green thread per process polls every half second (and at once when an
event was just ingested here). For each partner and channel it takes at most
``per_partner`` due deliveries that nobody holds: the rows get a lease
(``locked_until``) in a short transaction (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, so replicas share the work), then each is sent by its own green
thread with no database connection held during the call. A slow or dead
partner thus fills only its own ``per_partner`` slots and never delays the
others (no head-of-line blocking). A process that dies mid-send leaves the
lease to expire: the delivery is sent again, with the same id (at least once).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import eventlet
from eventlet.event import Event
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from kit.db import utcnow
from kit.metrics import PARTNER_DELIVERIES, PARTNER_DELIVERY_LAG
from notify.models import (
    ACTIVE,
    AMQP,
    DELIVERY_DELIVERED,
    DELIVERY_DISABLED,
    DELIVERY_FAILED,
    DELIVERY_PENDING,
    FAILED,
    WEBHOOK,
    Delivery,
    DeliveryAttempt,
    Partner,
    PartnerDelivery,
    PartnerEvent,
)
from notify.partners import delivery as push
from notify.partners import ssrf
from notify.partners.admin import audit, signing_secrets
from notify.partners.settings import PartnerSettings

log = logging.getLogger(__name__)

POLL = 0.5


@dataclass
class Job:
    delivery_id: str
    partner_id: str
    channel: str
    event_id: str
    event_type: str
    envelope: dict
    received_at: dt.datetime
    url: str | None
    secrets: list[str]


class Dispatcher:
    def __init__(
        self,
        sessionmaker,
        settings: PartnerSettings,
        publisher=None,
        clock=utcnow,
        poll: float = POLL,
    ):
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.client = push.WebhookClient(settings.webhook_timeout, settings.per_partner)
        self.publisher = publisher
        self.clock = clock
        self.poll = poll
        self.inflight: dict[tuple[str, str], int] = {}
        self.pool = eventlet.GreenPool(1000)
        self.woken = Event()
        self.done: list[tuple[Job, push.Outcome, dt.datetime]] = []  # sent, not yet recorded
        self.running = False
        self.thread = None

    @property
    def lease(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.settings.webhook_timeout + 10)

    # ---------------------------------------------------------------- loop

    def start(self) -> None:
        self.running = True
        self.thread = eventlet.spawn(self._loop)

    def stop(self, grace: float = 5.0) -> None:
        self.running = False
        self.wake()
        if self.thread is not None:
            self.thread.kill()
            self.thread = None
        with eventlet.Timeout(grace, False):
            self.pool.waitall()
        for thread in list(self.pool.coroutines_running):
            thread.kill()
        try:
            self.flush()  # what was sent is recorded, not sent again
        except Exception:  # noqa: BLE001 - the leases expire: sent again, same ids
            log.exception("partner dispatcher: last outcomes not recorded")

    def wake(self) -> None:
        if not self.woken.ready():
            self.woken.send(True)

    def _loop(self) -> None:
        while self.running:
            try:
                self.flush()
                self.tick()
            except Exception:  # noqa: BLE001 - the loop must outlive any failure
                log.exception("partner dispatcher tick failed")
            with eventlet.Timeout(self.poll, False):
                self.woken.wait()
            self.woken = Event()

    def tick(self) -> int:
        """Starts the sends that are due and fit in their partner's slots.

        One transaction for the whole tick: the due rows of each partner and
        channel (up to its free slots), their partners and events in one
        query each, and the leases in one UPDATE."""
        now = self.clock()
        with self.sessionmaker() as session:
            due = session.execute(
                select(PartnerDelivery.partner_id, PartnerDelivery.channel)
                .where(*self._due(now))
                .group_by(PartnerDelivery.partner_id, PartnerDelivery.channel)
            ).all()
            claimed = []
            for partner_id, channel in due:
                free = self.settings.per_partner - self.inflight.get((partner_id, channel), 0)
                if free > 0:
                    claimed += self._claim(session, partner_id, channel, free, now)
            if not claimed:
                session.rollback()
                return 0
            jobs = self._jobs(session, claimed, now)
            session.commit()
        for job in jobs:
            key = (job.partner_id, job.channel)
            self.inflight[key] = self.inflight.get(key, 0) + 1
            self.pool.spawn_n(self._run, job)
        return len(jobs)

    @staticmethod
    def _due(now):
        return (
            PartnerDelivery.state == DELIVERY_PENDING,
            PartnerDelivery.next_attempt_at <= now,
            or_(PartnerDelivery.locked_until.is_(None), PartnerDelivery.locked_until < now),
        )

    def _claim(self, session: Session, partner_id, channel, free, now) -> list:
        """The due rows of one partner and channel, locked until the commit
        (``SKIP LOCKED``: another replica's tick takes other rows)."""
        query = (
            select(
                PartnerDelivery.id,
                PartnerDelivery.partner_id,
                PartnerDelivery.channel,
                PartnerDelivery.event_seq,
                PartnerDelivery.event_id,
                PartnerDelivery.event_type,
            )
            .where(
                PartnerDelivery.partner_id == partner_id,
                PartnerDelivery.channel == channel,
                *self._due(now),
            )
            .order_by(PartnerDelivery.next_attempt_at, PartnerDelivery.event_seq)
            .limit(free)
        )
        if session.bind.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        return session.execute(query).all()

    def _jobs(self, session: Session, claimed: list, now) -> list[Job]:
        """Leases the claimed rows (or parks those of a partner that stopped)."""
        partners = {
            p.id: p
            for p in session.scalars(
                select(Partner).where(Partner.id.in_({row.partner_id for row in claimed}))
            )
        }
        events = {
            seq: (envelope, received_at)
            for seq, envelope, received_at in session.execute(
                select(PartnerEvent.seq, PartnerEvent.envelope, PartnerEvent.received_at).where(
                    PartnerEvent.seq.in_({row.event_seq for row in claimed})
                )
            )
        }
        jobs, parked = [], []
        for row in claimed:
            partner = partners.get(row.partner_id)
            if (
                partner is None
                or partner.state != ACTIVE
                or (row.channel == WEBHOOK and partner.webhook_state != "enabled")
            ):
                parked.append(row.id)
                continue
            envelope, received_at = events[row.event_seq]
            jobs.append(
                Job(
                    row.id,
                    row.partner_id,
                    row.channel,
                    row.event_id,
                    row.event_type,
                    envelope,
                    received_at,
                    partner.webhook_url,
                    signing_secrets(partner, now) if row.channel == WEBHOOK else [],
                )
            )
        if jobs:
            session.execute(
                update(PartnerDelivery)
                .where(PartnerDelivery.id.in_([job.delivery_id for job in jobs]))
                .values(locked_until=now + self.lease)
                .execution_options(synchronize_session=False)
            )
        if parked:
            session.execute(
                update(PartnerDelivery)
                .where(PartnerDelivery.id.in_(parked))
                .values(state=DELIVERY_DISABLED)
                .execution_options(synchronize_session=False)
            )
        return jobs

    # ---------------------------------------------------------------- one send

    def _run(self, job: Job) -> None:
        try:
            outcome = self.send(job)
        except Exception as exc:  # noqa: BLE001 - recorded as a failed attempt, retried
            log.exception("partner delivery %s failed unexpectedly", job.delivery_id)
            outcome = push.Outcome(False, error=f"erreur interne : {type(exc).__name__}")
        self.done.append((job, outcome, self.clock()))
        self.wake()

    def send(self, job: Job) -> push.Outcome:
        body = push.body_of(job.envelope)
        if job.channel == AMQP:
            if self.publisher is None:
                return push.Outcome(False, error="canal AMQP non configuré")
            started = eventlet.hubs.get_hub().clock()
            try:
                self.publisher.publish(job.partner_id, job.event_type, job.envelope)
            except Exception as exc:  # noqa: BLE001 - recorded, retried
                return push.Outcome(False, error=f"AMQP : {exc}"[:500])
            elapsed = int((eventlet.hubs.get_hub().clock() - started) * 1000)
            return push.Outcome(True, latency_ms=elapsed)
        try:
            target = self.settings.check_url(job.url)  # resolved again: no DNS rebinding
        except ssrf.UnsafeUrl as exc:
            return push.Outcome(False, error=f"adresse refusée : {exc}"[:500])
        headers = push.sign(job.secrets, job.event_id, self.clock(), body)
        return self.client.post(target, body.encode(), headers)

    def flush(self) -> int:
        """Records the finished sends in one transaction, then frees their slots.

        Batching is what keeps a busy dispatcher cheap: under load, the sends
        that ended while the previous batch was written come in the next one.
        If the write fails, the leases expire and the sends are made again
        (at least once, same ids)."""
        done, self.done = self.done, []
        if not done:
            return 0
        try:
            self.record_many(done)
        finally:
            for job, _outcome, _at in done:
                key = (job.partner_id, job.channel)
                self.inflight[key] = max(0, self.inflight.get(key, 1) - 1)
        return len(done)

    def record_many(self, done: list[tuple[Job, push.Outcome, dt.datetime]]) -> None:
        with self.sessionmaker() as session:
            query = select(PartnerDelivery).where(
                PartnerDelivery.id.in_([job.delivery_id for job, _o, _a in done])
            )
            if session.bind.dialect.name == "postgresql":
                query = query.with_for_update()
            rows = {row.id: row for row in session.scalars(query)}
            partner_ids = {job.partner_id for job, _o, _a in done if job.channel == WEBHOOK}
            partners = {
                p.id: p for p in session.scalars(select(Partner).where(Partner.id.in_(partner_ids)))
            }
            for job, outcome, now in done:
                row = rows.get(job.delivery_id)
                if row is None or row.state != DELIVERY_PENDING:
                    continue
                self._apply(session, row, partners.get(job.partner_id), job, outcome, now)
            session.commit()

    def _apply(self, session, row, partner, job: Job, outcome: push.Outcome, now) -> None:
        row.attempts += 1
        row.last_status = outcome.status
        row.last_error = outcome.error
        row.locked_until = None
        session.add(
            DeliveryAttempt(
                delivery_id=row.id,
                at=now,
                status=outcome.status,
                latency_ms=outcome.latency_ms,
                response_excerpt=(outcome.excerpt or None) and outcome.excerpt[:500],
                error=outcome.error,
            )
        )
        if outcome.ok:
            row.state = DELIVERY_DELIVERED
            row.delivered_at = now
            row.next_attempt_at = None
            if job.channel == WEBHOOK and partner and partner.webhook_failing_since:
                partner.webhook_failing_since = None
            PARTNER_DELIVERY_LAG.labels(channel=job.channel).observe(
                max(0.0, (now - job.received_at).total_seconds())
            )
        else:
            wait = push.next_wait(row.attempts, self.settings.schedule)
            if wait is None:
                row.state = DELIVERY_FAILED
                row.next_attempt_at = None
            else:
                row.next_attempt_at = now + wait
            if job.channel == WEBHOOK and partner is not None:
                self._failing(session, partner, now, outcome)
        PARTNER_DELIVERIES.labels(
            channel=job.channel, outcome="delivered" if outcome.ok else "failed"
        ).inc()

    def _failing(self, session: Session, partner: Partner, now, outcome) -> None:
        """A webhook failing for ``disable_after_days`` is disabled, with an e-mail."""
        if partner.webhook_failing_since is None:
            partner.webhook_failing_since = now
            return
        limit = dt.timedelta(days=self.settings.disable_after_days)
        if partner.webhook_state != "enabled" or now - partner.webhook_failing_since < limit:
            return
        partner.webhook_state = "disabled"
        partner.webhook_disabled_reason = (
            f"échecs continus depuis le {partner.webhook_failing_since:%d/%m/%Y %H:%M} UTC "
            f"(dernier : {outcome.error or outcome.status})"
        )[:300]
        session.execute(
            update(PartnerDelivery)
            .where(
                PartnerDelivery.partner_id == partner.id,
                PartnerDelivery.channel == WEBHOOK,
                PartnerDelivery.state == DELIVERY_PENDING,
            )
            .values(state=DELIVERY_DISABLED)
            .execution_options(synchronize_session=False)
        )
        audit(session, partner.id, None, "webhook_disabled", reason=partner.webhook_disabled_reason)
        log.warning("partner %s: webhook disabled after repeated failures", partner.id)
        for to in dict.fromkeys([partner.contact_email, self.settings.agency_email]):
            session.add(_disabled_email(partner, to, self.settings))


def _disabled_email(partner: Partner, to: str, settings: PartnerSettings) -> Delivery:
    """Queued as an e-mail whose wait is over: notify's e-mail retry timer
    (``retry_deliveries``, every 30 s) sends it, with its retries."""
    body = (
        "Bonjour,\n\n"
        f"Les envois du webhook du partenaire « {partner.name} » vers\n{partner.webhook_url}\n"
        f"échouent sans interruption depuis le {partner.webhook_failing_since:%d/%m/%Y à %H:%M} "
        "(UTC) : le webhook a été désactivé.\n\n"
        "Aucun événement n'est perdu : ils restent dans le flux "
        "(GET /api/v1/partner/events) et seront de nouveau envoyés quand l'agence "
        "réactivera le webhook, une fois l'adresse réparée.\n\n"
        f"Motif : {partner.webhook_disabled_reason}\n"
        "\n-- \nL'équipe de la plateforme des formations\n"
        "Ce message a été envoyé automatiquement, merci de ne pas y répondre."
    )
    return Delivery(
        source_event_id=f"webhook-disabled-{partner.id}",
        template="partner_webhook_disabled",
        to=to,
        subject="Webhook partenaire désactivé après des échecs répétés",
        body=body,
        status=FAILED,
        attempts=1,
        last_error="en attente du premier envoi",
        last_attempt_at=dt.datetime(2000, 1, 1, tzinfo=dt.UTC),
    )
