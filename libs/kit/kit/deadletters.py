"""Inspect and replay the events a service parked (``kit.handlers``).

    python -m kit.deadletters list <service> [--limit N] [--amqp-uri URI]
    python -m kit.deadletters replay <service> [--limit N] [--amqp-uri URI]

``list`` prints one JSON object per parked event (its reason: ``error``,
``handler``, ``queue``, ``attempts``, ``first_failure``, ``parked_at``, and
its ``body``) and leaves them parked (they are fetched unacknowledged, then
returned to the queue when the channel closes). ``replay`` publishes each
parked event back to the handler queue it came from (``x-kit-queue``, by the
default exchange), with its attempt count reset, waits for the broker's
confirm, then removes it from ``<service>.deadletter``: fix the cause first
(a replayed event that fails again goes through the retries and is parked
again). The AMQP URI: ``--amqp-uri``, else ``AMQP_URI``, else the local
broker. Replaying is safe: handlers are idempotent through their inbox.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from amqp.exceptions import InternalError
from kombu import Connection, Exchange

from kit.handlers import (
    H_ATTEMPTS,
    H_DELAY,
    H_ERROR,
    H_FIRST_FAILURE,
    H_HANDLER,
    H_PARKED_AT,
    H_QUEUE,
    deadletter_queue,
)

DEFAULT_AMQP_URI = "amqp://guest:guest@127.0.0.1:5672/"


def _text(body) -> str:
    if isinstance(body, bytes):
        return body.decode("utf-8", "replace")
    return str(body)


def _describe(message) -> dict:
    h = message.headers or {}
    return {
        "queue": h.get(H_QUEUE),
        "handler": h.get(H_HANDLER),
        "error": h.get(H_ERROR),
        "attempts": h.get(H_ATTEMPTS),
        "first_failure": h.get(H_FIRST_FAILURE),
        "parked_at": h.get(H_PARKED_AT),
        "content_type": message.content_type,
        "body": _text(message.body),
    }


def _get(queue):
    """basic.get; a quorum queue just declared may not have started yet
    (``INTERNAL_ERROR … noproc``, which closes the connection): tried again."""
    try:
        return queue.get(no_ack=False)
    except InternalError as exc:
        if "noproc" in str(exc):
            raise _Retry() from exc
        raise


class _Retry(Exception):
    pass


def _retrying(fn):
    for attempt in range(20):
        try:
            return fn()
        except _Retry:
            if attempt == 19:
                raise
            time.sleep(0.25)
    return None


def list_parked(amqp_uri: str, service: str, limit: int = 100) -> list[dict]:
    """The first ``limit`` parked events of ``service``; they stay parked."""
    return _retrying(lambda: _list_parked(amqp_uri, service, limit))


def replay(amqp_uri: str, service: str, limit: int | None = None) -> int:
    """Moves parked events back to their handler's queue; returns how many."""
    return _retrying(lambda: _replay(amqp_uri, service, limit))


def _list_parked(amqp_uri: str, service: str, limit: int) -> list[dict]:
    found = []
    with Connection(amqp_uri) as conn:
        channel = conn.channel()
        queue = deadletter_queue(service).bind(channel)
        queue.declare()
        try:
            while len(found) < limit:
                message = _get(queue)
                if message is None:
                    break
                found.append(_describe(message))
        finally:
            channel.close()  # unacknowledged: back to the queue
    return found


def _replay(amqp_uri: str, service: str, limit: int | None) -> int:
    moved = 0
    with Connection(amqp_uri, transport_options={"confirm_publish": True}) as conn:
        channel = conn.channel()
        queue = deadletter_queue(service).bind(channel)
        queue.declare()
        producer = conn.Producer(channel=channel)
        try:
            while limit is None or moved < limit:
                message = _get(queue)
                if message is None:
                    break
                headers = dict(message.headers or {})
                target = headers.get(H_QUEUE)
                if not target:
                    message.requeue()
                    raise SystemExit("a parked event has no x-kit-queue header: left parked")
                for key in (H_ATTEMPTS, H_DELAY, H_FIRST_FAILURE, H_PARKED_AT):
                    headers.pop(key, None)
                headers["x-kit-replayed-error"] = headers.pop(H_ERROR, "")
                producer.publish(
                    message.body,
                    exchange=Exchange(""),
                    routing_key=target,
                    headers=headers,
                    content_type=message.content_type,
                    content_encoding=message.content_encoding,
                    delivery_mode=2,
                    mandatory=True,
                )
                message.ack()
                moved += 1
        finally:
            channel.close()
    return moved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kit.deadletters",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=["list", "replay"])
    parser.add_argument("service")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--amqp-uri", default=os.environ.get("AMQP_URI") or DEFAULT_AMQP_URI)
    args = parser.parse_args(argv)
    if args.command == "list":
        for entry in list_parked(args.amqp_uri, args.service, args.limit or 100):
            print(json.dumps(entry, ensure_ascii=False))
    else:
        print(
            f"{replay(args.amqp_uri, args.service, args.limit)} event(s) replayed", file=sys.stderr
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
