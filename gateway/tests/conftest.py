"""Fixtures of the gateway tests (flaskr style: ``app``, ``client``).

``app`` needs no broker: its AMQP_URI points at a closed port, so a test that
reaches the network by mistake fails fast. ``broker_app`` talks to the
per-test RabbitMQ vhost of nameko's ``rabbit_config`` fixture; the root
conftest monkey-patches eventlet, so a service container started with
``container_factory`` runs in this same process.
"""

from __future__ import annotations

import socket

import pytest

from gateway import create_app
from gateway.rpc import close_pools


def closed_port_uri() -> str:
    """An AMQP URI nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"amqp://guest:guest@127.0.0.1:{port}/"


@pytest.fixture
def make_app():
    """Factory: ``make_app(**settings)`` -> app; pools closed at teardown."""
    apps = []

    def make(**settings):
        config = {"TESTING": True, "AMQP_URI": closed_port_uri(), **settings}
        app = create_app(config)
        apps.append(app)
        return app

    yield make
    for app in apps:
        close_pools(app)
        app.extensions["revocations"].stop()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def broker_app(make_app, rabbit_config):
    """Factory: an app bound to this test's RabbitMQ vhost."""

    def make(**settings):
        return make_app(**{"AMQP_URI": rabbit_config["AMQP_URI"], **settings})

    return make
