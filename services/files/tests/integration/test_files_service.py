"""The files service in a real container, over real RabbitMQ, on a real
PostgreSQL database migrated from empty."""

from __future__ import annotations

import base64

import pytest
from nameko.events import event_handler
from nameko.standalone.rpc import ClusterRpcProxy
from nameko.testing.services import entrypoint_waiter

from files.service import FilesService
from kit.context import CALLER_KEY, Caller
from kit.errors import Forbidden, InvalidInput, NotFound, Unauthenticated
from kit.migrate import upgrade

pytestmark = pytest.mark.integration

MANAGER_A = Caller(user_id="u-a", org_id="org-a", roles=("manager",))
USER_B = Caller(user_id="u-b", org_id="org-b", roles=("user",))
ANONYMOUS = Caller()


@pytest.fixture
def files_service(container_factory, rabbit_config, pg_database, tmp_path):
    url = pg_database("files")
    upgrade("files", url)
    config = dict(
        rabbit_config, FILES_DB_URL=url, FILES_DIR=str(tmp_path / "blobs"), FILES_MAX_BYTES=1024
    )
    container = container_factory(FilesService, config)
    container.start()
    yield container
    container.stop()


class Listener:
    """Stands for any service that reacts to new files."""

    name = "files_listener"

    @event_handler("files", "file_stored")
    def on_file_stored(self, payload):
        return payload


@pytest.fixture
def rpc_as(rabbit_config, files_service):
    proxies = []

    def make(caller: Caller):
        proxy = ClusterRpcProxy(
            rabbit_config, timeout=10, context_data={CALLER_KEY: caller.to_header()}
        )
        proxies.append(proxy)
        return proxy.start().files

    yield make
    for proxy in proxies:
        proxy.stop()


def test_a_file_goes_in_and_comes_back_over_the_bus(rpc_as, tmp_path):
    files = rpc_as(MANAGER_A)
    assert files.health() == {"service": "files", "status": "ok"}
    stored = files.store_file(
        {"kind": "annex", "name": "plan.pdf", "content_type": "application/pdf"},
        base64.b64encode(b"%PDF plan").decode(),
    )
    assert stored["owner_org_id"] == "org-a"
    got = files.get_file(stored["id"])
    assert base64.b64decode(got["content_b64"]) == b"%PDF plan"
    sha = stored["sha256"]
    blob = tmp_path / "blobs" / sha[:2] / sha[2:4] / sha
    assert blob.read_bytes() == b"%PDF plan"
    assert files.delete_file(stored["id"])["id"] == stored["id"]
    assert not blob.exists()
    with pytest.raises(NotFound):
        files.get_file_info(stored["id"])


def test_another_organisation_gets_a_typed_not_found(rpc_as):
    stored = rpc_as(MANAGER_A).store_file(
        {"kind": "annex", "name": "plan.pdf"}, base64.b64encode(b"plan").decode()
    )
    with pytest.raises(NotFound) as caught:
        rpc_as(USER_B).get_file(stored["id"])
    assert caught.value.code == "files.not_found"
    assert caught.value.message == "Fichier introuvable."


@pytest.mark.parametrize(
    "caller, meta, content, error, code",
    [
        (MANAGER_A, {"kind": "annex", "name": "a"}, "x" * 4000, InvalidInput, "files.too_large"),
        (
            MANAGER_A,
            {"kind": "annex", "name": "a", "owner_org_id": "org-b"},
            "eA==",
            Forbidden,
            "files.owner_forbidden",
        ),
        (ANONYMOUS, {"kind": "annex", "name": "a"}, "eA==", Unauthenticated, "unauthenticated"),
    ],
)
def test_refusals_arrive_typed(rpc_as, caller, meta, content, error, code):
    with pytest.raises(error) as caught:
        rpc_as(caller).store_file(meta, content)
    assert caught.value.code == code


def test_a_stored_file_is_announced_on_the_bus_without_its_bytes(
    rpc_as, container_factory, rabbit_config
):
    listener = container_factory(Listener, rabbit_config)
    listener.start()
    with entrypoint_waiter(listener, "on_file_stored", timeout=10) as result:
        stored = rpc_as(MANAGER_A).store_file(
            {"kind": "annex", "name": "a.pdf"}, base64.b64encode(b"plan").decode()
        )
    payload = result.get()
    assert payload["file_id"] == stored["id"]
    assert payload["sha256"] == stored["sha256"]
    assert "content_b64" not in payload and "event_id" in payload
