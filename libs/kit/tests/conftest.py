"""Fixtures of the kit's tests: ``probe``, a small service built on
``ServiceBase`` and helpers to read what it exports (a fixture, as pytest's
importlib mode gives test folders without ``__init__`` no importable module)."""

from __future__ import annotations

import socket
import uuid
from types import SimpleNamespace

import pytest
import requests
from nameko.events import event_handler
from prometheus_client.parser import text_string_to_metric_families

from kit.db import Database, OutboxMixin, make_base
from kit.entrypoints import rpc
from kit.errors import InvalidInput, NotFound
from kit.service import ServiceBase

Base = make_base()


class ProbeOutbox(OutboxMixin, Base):
    __tablename__ = "outbox"


class ProbeBase(ServiceBase):
    outbox_model = ProbeOutbox
    upload_methods = ("upload",)

    def relay_outbox(self) -> None:
        """No timer: outbox rows stay pending for the lag tests."""

    @rpc
    def find(self, thing_id: str) -> dict:
        raise NotFound("probe.not_found", "Chose introuvable.", {"thing_id": thing_id})

    @rpc
    def upload(self, size: int) -> dict:
        if size > 10:
            raise InvalidInput("probe.too_large", "Fichier trop gros.")
        return {"size": size}

    @rpc
    def rename(self, name: str) -> dict:
        raise InvalidInput("probe.bad_name", "Nom invalide.")

    @rpc
    def boom(self) -> None:
        raise RuntimeError("a bug")

    @rpc
    def whoami(self) -> dict:
        return {"request_id": self.caller.request_id}

    @rpc
    def announce(self) -> None:
        """Dispatches from this worker, as ``publish_pending`` does."""
        self.dispatch("probe_announced", {"n": 1})


def probe_service(name: str | None = None) -> type:
    """A probe class with its own name (its own metric labels)."""
    name = name or f"probe_{uuid.uuid4().hex[:8]}"
    return type("ProbeService", (ProbeBase,), {"name": name, "db": Database(name)})


def listener_service(source: str) -> type:
    """Handles ``<source>.probe_announced``."""

    @event_handler(source, "probe_announced")
    def on_announced(self, payload: dict) -> None:
        pass

    name = f"listener_{uuid.uuid4().hex[:8]}"
    return type("ListenerService", (ServiceBase,), {"name": name, "on_announced": on_announced})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    """``{(sample name, frozenset(labels.items())): value}`` from ``/metrics``."""
    response = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    response.raise_for_status()
    return samples(response.text)


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: dict, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


@pytest.fixture
def probe() -> SimpleNamespace:
    return SimpleNamespace(
        Base=Base,
        Outbox=ProbeOutbox,
        service=probe_service,
        listener=listener_service,
        free_port=free_port,
        scrape=scrape,
        value=value,
    )
