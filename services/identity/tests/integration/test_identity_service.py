"""identity in a real nameko container, on RabbitMQ and PostgreSQL, called
through a real RPC proxy: every error class arrives typed, events leave
through the outbox."""

import pytest
from nameko.events import event_handler
from nameko.standalone.rpc import ClusterRpcProxy
from nameko.testing.services import entrypoint_waiter

from identity.service import IdentityService
from kit.context import Caller
from kit.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    TooManyRequests,
    Unauthenticated,
)
from kit.migrate import upgrade

pytestmark = pytest.mark.integration

PASSWORD = "correct horse 42"
FORM = {
    "account_type": "OFA",
    "siret": "41816609600051",
    "nda": "11930882293",
    "apprentice_count": 3,
    "last_name": "Martin",
    "first_name": "Claire",
    "email": "claire@example.org",
    "email_confirm": "claire@example.org",
    "password": PASSWORD,
    "password_confirm": PASSWORD,
}


class Listener:
    name = "identity_test_listener"
    received = []

    @event_handler("identity", "user_registered")
    def on_user_registered(self, payload):
        self.received.append(payload)


@pytest.fixture
def identity(container_factory, rabbit_config, pg_database):
    url = pg_database("identity")
    upgrade("identity", url)  # the migration builds an empty database
    config = dict(
        rabbit_config, IDENTITY_DB_URL=url, SIRENE_URL="http://127.0.0.1:9"
    )  # registry down: degraded mode
    container = container_factory(IdentityService, config)
    container.start()
    listener = container_factory(Listener, rabbit_config)
    listener.start()
    Listener.received.clear()
    return config, listener, url


def proxy(config, caller=None):
    context = {"caller": caller.to_header()} if caller else None
    return ClusterRpcProxy(config, context_data=context, timeout=10)


def test_registration_event_leaves_through_the_outbox(identity):
    config, listener, _url = identity
    with entrypoint_waiter(listener, "on_user_registered", timeout=10):
        with proxy(config) as rpc:
            assert rpc.identity.register_organisation(FORM, [])["status"] == "confirmation_sent"
    [event] = Listener.received
    assert event["email"] == "claire@example.org" and event["event_id"]


def test_every_error_class_arrives_typed(identity):
    config, listener, url = identity
    with proxy(config) as rpc:
        with pytest.raises(InvalidInput) as invalid:
            rpc.identity.register_organisation(dict(FORM, siret="41816609600052"), [])
        assert invalid.value.code == "registration.invalid"
        assert "siret" in invalid.value.details["fields"]

        with pytest.raises(Unauthenticated):
            rpc.identity.get_me()

        with entrypoint_waiter(listener, "on_user_registered", timeout=10):
            rpc.identity.register_organisation(FORM, [])
        token = Listener.received[-1]["confirm_token"]
        rpc.identity.confirm_email(token)

        with pytest.raises(Forbidden) as pending:
            rpc.identity.authenticate("claire@example.org", PASSWORD)
        assert pending.value.code == "auth.awaiting_validation"

        for _ in range(5):
            with pytest.raises(Unauthenticated):
                rpc.identity.authenticate("claire@example.org", "wrong password 1")
        with pytest.raises(TooManyRequests) as limited:
            rpc.identity.authenticate("claire@example.org", PASSWORD)
        assert limited.value.details["retry_after"] > 0

    # an agency agent, created as the seed command does
    from sqlalchemy.orm import sessionmaker

    from identity.use_cases import ensure_admin
    from kit.db import make_engine

    engine = make_engine(url)
    with sessionmaker(engine)() as session:
        agent_id = ensure_admin(session, "agent@agence.example", PASSWORD).id
    engine.dispose()
    caller = Caller(user_id=agent_id, roles=("agency_admin",))
    with proxy(config, caller) as rpc:
        with pytest.raises(NotFound) as missing:
            rpc.identity.get_organisation("0" * 32)
        assert missing.value.code == "identity.organisation_not_found"
        [pending_user] = rpc.identity.list_registrations()
        assert pending_user["organisation"]["sirene_status"] == "pending"
        with pytest.raises(Conflict) as blocked:
            rpc.identity.validate_user(pending_user["id"])
        assert blocked.value.code == "validation.sirene_pending"
