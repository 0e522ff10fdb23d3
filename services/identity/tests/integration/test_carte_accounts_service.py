"""identity's carte RPCs in a real container on RabbitMQ and PostgreSQL:
accounts are announced through the outbox, errors arrive typed, a carte
account signs in by identifier."""

import pytest
from nameko.events import event_handler
from nameko.standalone.rpc import ClusterRpcProxy
from nameko.testing.services import entrypoint_waiter
from sqlalchemy.orm import sessionmaker

from identity.service import IdentityService
from identity.use_cases import ensure_admin
from kit.codes import uai_check_letter
from kit.context import Caller
from kit.db import make_engine
from kit.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from kit.migrate import upgrade

pytestmark = pytest.mark.integration

UAI = "0311234" + uai_check_letter("0311234")


class CarteListener:
    name = "carte_accounts_test_listener"
    received = []

    @event_handler("identity", "carte_account_saved")
    def on_carte_account_saved(self, payload):
        self.received.append(payload)


@pytest.fixture
def identity(container_factory, rabbit_config, pg_database):
    url = pg_database("identity")
    upgrade("identity", url)
    config = dict(rabbit_config, IDENTITY_DB_URL=url, SIRENE_URL="http://127.0.0.1:9")
    container_factory(IdentityService, config).start()
    listener = container_factory(CarteListener, rabbit_config)
    listener.start()
    CarteListener.received.clear()
    engine = make_engine(url)
    with sessionmaker(engine)() as session:
        agent_id = ensure_admin(session, "agent@agence.example", "correct horse 42").id
    engine.dispose()
    return config, listener, Caller(user_id=agent_id, roles=("agency_admin",))


def proxy(config, caller=None):
    context = {"caller": caller.to_header()} if caller else None
    return ClusterRpcProxy(config, context_data=context, timeout=10)


def test_a_carte_account_is_announced_signs_in_and_errors_arrive_typed(identity):
    config, listener, admin = identity
    with proxy(config, admin) as rpc:
        with entrypoint_waiter(listener, "on_carte_account_saved", timeout=10):
            created = rpc.identity.create_carte_account(
                {
                    "kind": "establishment",
                    "identifier": UAI,
                    "label": "Lycée",
                    "contact_email": "lycee@example.org",
                }
            )
        with pytest.raises(Conflict) as taken:
            rpc.identity.create_carte_account(
                {
                    "kind": "establishment",
                    "identifier": UAI,
                    "label": "Lycée",
                    "contact_email": "lycee@example.org",
                }
            )
        assert taken.value.code == "carte.identifier_taken"
        with pytest.raises(InvalidInput) as invalid:
            rpc.identity.create_carte_account({"kind": "reviewer", "identifier": "x"})
        assert invalid.value.code == "carte.account_invalid"
        with pytest.raises(NotFound):
            rpc.identity.get_carte_account("nobody")
        with pytest.raises(NotFound):  # PostgreSQL refuses NUL: nobody, not a 500
            rpc.identity.get_carte_account("no\x00body")
    [event] = CarteListener.received
    assert event["identifier"] == UAI and event["revision"] == 1 and event["active"] is True

    with proxy(config) as rpc:
        with pytest.raises(Unauthenticated) as wrong:
            rpc.identity.carte_authenticate(UAI, "wrong", "10.0.0.1")
        assert wrong.value.code == "auth.invalid_credentials"
        with pytest.raises(Unauthenticated):
            rpc.identity.carte_authenticate("\x00", "wrong", "10.0.0.1")
        signed = rpc.identity.carte_authenticate(UAI.lower(), created["password"], "10.0.0.1")
    assert signed["caller"]["roles"] == ["carte_establishment"]

    lycee = Caller(user_id=signed["caller"]["user_id"], roles=("carte_establishment",))
    with proxy(config, lycee) as rpc:
        assert rpc.identity.get_carte_me()["signed_in_as"].endswith(UAI)
        with pytest.raises(Forbidden) as refused:
            rpc.identity.list_carte_accounts()
        assert refused.value.code == "forbidden.carte_admin_only"
