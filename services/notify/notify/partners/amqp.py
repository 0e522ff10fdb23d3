"""The partner AMQP channel (DESIGN §8): a topic exchange ``partner.events``
on a vhost of its own, one durable queue and one RabbitMQ user per partner.

``Provisioner`` talks to RabbitMQ's management API: it creates the exchange,
the partner's quorum queue ``partner.<id>`` bound with ``<id>.<event>`` for
each subscribed event, and the user ``partner-<id>`` whose only right is to
read that queue (configure ``^$``, write ``^$``). ``Publisher`` sends
structured CloudEvents (``application/cloudevents+json``), persistent,
``mandatory`` and with publisher confirms: a message no queue took is a
failed attempt, retried like a webhook.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import threading
import urllib.parse

import kombu
import requests

log = logging.getLogger(__name__)

EXCHANGE = "partner.events"
CONTENT_TYPE = "application/cloudevents+json"


class AmqpUnavailable(RuntimeError):
    pass


def queue_name(partner_id: str) -> str:
    return f"partner.{partner_id}"


def username(partner_id: str) -> str:
    return f"partner-{partner_id}"


def routing_key(partner_id: str, event_type: str) -> str:
    return f"{partner_id}.{event_type}"


def vhost_of(uri: str) -> str:
    path = urllib.parse.urlsplit(uri).path
    return urllib.parse.unquote(path[1:]) if len(path) > 1 else "/"


class Provisioner:
    def __init__(self, amqp_uri: str, rabbit_api: str, public_uri: str | None = None):
        self.vhost = vhost_of(amqp_uri)
        parts = urllib.parse.urlsplit(rabbit_api)
        self.base = f"{parts.scheme}://{parts.hostname}:{parts.port or 15672}/api"
        self.auth = (
            urllib.parse.unquote(parts.username or "guest"),
            urllib.parse.unquote(parts.password or "guest"),
        )
        amqp = urllib.parse.urlsplit(amqp_uri)
        self.public = public_uri or f"{amqp.hostname}:{amqp.port or 5672}"
        self.scheme = "amqps" if amqp.scheme == "amqps" else "amqp"

    def _url(self, *parts: str) -> str:
        return "/".join([self.base, *(urllib.parse.quote(p, safe="") for p in parts)])

    def _call(self, method: str, url: str, body=None, ok=(200, 201, 204)) -> requests.Response:
        try:
            response = requests.request(method, url, json=body, auth=self.auth, timeout=10)
        except requests.RequestException as exc:
            raise AmqpUnavailable(f"API de gestion RabbitMQ injoignable : {exc}") from exc
        if response.status_code not in ok:
            raise AmqpUnavailable(
                f"API de gestion RabbitMQ : {method} {url} → {response.status_code} "
                f"{response.text[:200]}"
            )
        return response

    def ensure_exchange(self) -> None:
        self._call(
            "PUT",
            self._url("exchanges", self.vhost, EXCHANGE),
            {"type": "topic", "durable": True, "auto_delete": False},
        )

    def provision(self, partner_id: str, event_types: list[str]) -> dict:
        """Creates (or resets the password of) the partner's user, its queue and
        bindings; returns the credentials, to be shown once."""
        self.ensure_exchange()
        queue = queue_name(partner_id)
        self._call(
            "PUT",
            self._url("queues", self.vhost, queue),
            {"durable": True, "auto_delete": False, "arguments": {"x-queue-type": "quorum"}},
        )
        self.bind(partner_id, event_types)
        user = username(partner_id)
        password = secrets.token_urlsafe(24)
        self._call("PUT", self._url("users", user), {"password": password, "tags": ""})
        self._call(
            "PUT",
            self._url("permissions", self.vhost, user),
            {"configure": "^$", "write": "^$", "read": f"^{re.escape(queue)}$"},
        )
        vhost = urllib.parse.quote(self.vhost, safe="")
        return {
            "uri": f"{self.scheme}://{user}:{password}@{self.public}/{vhost}",
            "username": user,
            "password": password,
            "vhost": self.vhost,
            "queue": queue,
            "exchange": EXCHANGE,
        }

    def bind(self, partner_id: str, event_types: list[str]) -> None:
        """Makes the queue's bindings exactly the subscribed event types."""
        queue = queue_name(partner_id)
        listing = self._call("GET", self._url("bindings", self.vhost, "e", EXCHANGE, "q", queue))
        current = {b["routing_key"]: b["properties_key"] for b in listing.json()}
        wanted = {routing_key(partner_id, t) for t in event_types}
        for key in sorted(wanted - set(current)):
            self._call(
                "POST",
                self._url("bindings", self.vhost, "e", EXCHANGE, "q", queue),
                {"routing_key": key},
            )
        for key in sorted(set(current) - wanted):
            self._call(
                "DELETE",
                self._url("bindings", self.vhost, "e", EXCHANGE, "q", queue, current[key]),
            )

    def remove(self, partner_id: str) -> None:
        self._call("DELETE", self._url("users", username(partner_id)), ok=(204, 404))
        self._call("DELETE", self._url("queues", self.vhost, queue_name(partner_id)), ok=(204, 404))


class Publisher:
    """One connection to the partner vhost, one publish at a time, confirmed."""

    def __init__(self, amqp_uri: str):
        self.uri = amqp_uri
        self.lock = threading.Lock()
        self.connection = None
        self.producer = None
        self.returned: list = []

    def _producer(self):
        if self.producer is None:
            self.connection = kombu.Connection(
                self.uri, transport_options={"confirm_publish": True}, connect_timeout=5
            )
            channel = self.connection.channel()
            channel.events["basic_return"].add(self._on_return)
            # the exchange exists (Provisioner.ensure_exchange): never redeclared here
            exchange = kombu.Exchange(EXCHANGE, type="topic", durable=True, no_declare=True)
            self.producer = kombu.Producer(channel, exchange=exchange, auto_declare=False)
        return self.producer

    def _on_return(self, exc, exchange, routing_key, message):
        self.returned.append(routing_key)

    def publish(self, partner_id: str, event_type: str, envelope: dict) -> None:
        """Raises when the broker did not take the message into the partner's queue."""
        key = routing_key(partner_id, event_type)
        body = json.dumps(envelope, ensure_ascii=False, separators=(",", ":"))
        with self.lock:
            try:
                self.returned.clear()
                self._producer().publish(
                    body,
                    routing_key=key,
                    content_type=CONTENT_TYPE,
                    content_encoding="utf-8",
                    delivery_mode=2,
                    mandatory=True,
                    message_id=envelope["id"],
                    type=envelope["type"],
                    retry=False,
                )
            except Exception:
                self.close()
                raise
            if key in self.returned:
                raise AmqpUnavailable(
                    f"aucune file n'a reçu le message ({key}) : file du partenaire absente"
                )

    def close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.release()
            except Exception:  # noqa: BLE001 - closing a broken link
                log.debug("closing the partner AMQP link failed", exc_info=True)
        self.connection = None
        self.producer = None
