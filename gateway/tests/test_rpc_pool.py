"""The client pool's bookkeeping, with fake clients (no broker)."""

from __future__ import annotations

import itertools

import pytest

from gateway import rpc as rpc_module
from gateway.rpc import Lease, RpcPool


class FakeClient:
    ids = itertools.count(1)

    def __init__(self, config, timeout, connect_timeout):
        self.id = next(self.ids)
        self.pid = rpc_module.os.getpid()
        self.dirty = False
        self.closed = False
        self.tidied = 0

    # what the pool looks at
    def usable(self):
        return not self.closed

    def tidy(self):
        self.tidied += 1
        self.dirty = False

    def close(self):
        self.closed = True


@pytest.fixture
def pool():
    return RpcPool({"AMQP_URI": "amqp://unused"}, timeout=1.0, max_idle=2, client_cls=FakeClient)


def test_clients_are_lent_last_in_first_out(pool):
    a, b = pool.acquire(), pool.acquire()
    pool.release(a)
    pool.release(b)

    assert pool.acquire() is b
    assert pool.acquire() is a


def test_a_released_client_is_reused_not_recreated(pool):
    for _ in range(5):
        pool.release(pool.acquire())

    assert pool.stats() == {"idle": 1, "in_use": 0, "created": 1, "dropped": 0}


def test_broken_clients_are_closed_and_dropped(pool):
    client = pool.acquire()
    pool.release(client, broken=True)

    assert client.closed
    assert pool.stats() == {"idle": 0, "in_use": 0, "created": 1, "dropped": 1}
    assert pool.acquire() is not client


def test_at_most_max_idle_clients_are_kept(pool):
    clients = [pool.acquire() for _ in range(4)]
    for client in clients:
        pool.release(client)

    assert pool.stats()["idle"] == 2
    assert [c.closed for c in clients] == [False, False, True, True]


def test_a_client_left_dirty_by_a_timeout_is_tidied_before_reuse(pool):
    client = pool.acquire()
    client.dirty = True
    pool.release(client)

    assert client.tidied == 1
    assert pool.acquire() is client


def test_a_client_that_cannot_be_tidied_is_dropped(pool, monkeypatch):
    client = pool.acquire()
    client.dirty = True
    monkeypatch.setattr(client, "tidy", lambda: (_ for _ in ()).throw(OSError("gone")))
    pool.release(client)

    assert client.closed
    assert pool.stats()["dropped"] == 1


def test_after_fork_inherited_clients_are_never_lent_nor_closed(pool, monkeypatch):
    parent = pool.acquire()
    pool.release(parent)
    child_pid = rpc_module.os.getpid() + 1
    monkeypatch.setattr(rpc_module.os, "getpid", lambda: child_pid)

    child = pool.acquire()

    assert child is not parent
    assert not parent.closed  # its socket belongs to the parent process
    assert pool.stats()["created"] == 1


def test_a_client_from_the_parent_is_not_returned_to_the_childs_pool(pool, monkeypatch):
    parent = pool.acquire()
    monkeypatch.setattr(rpc_module.os, "getpid", lambda: parent.pid + 1)

    pool.release(parent)

    assert pool.stats()["idle"] == 0
    assert not parent.closed


def test_a_lease_acquires_lazily_and_releases_once(pool):
    lease = Lease(pool, lambda: "{}")

    assert pool.stats()["created"] == 0
    lease.release()
    lease.release()
    assert pool.stats() == {"idle": 0, "in_use": 0, "created": 0, "dropped": 0}


def test_rpc_needs_no_connection_until_a_call(make_app):
    app = make_app()  # AMQP_URI points at a closed port

    with app.test_request_context():
        client = rpc_module.rpc()
        service = client.identity
        rpc_module._return_leases()

    assert service is not None
    assert rpc_module.pool_for(app).stats()["created"] == 0


def test_rpc_timeout_selects_a_separate_pool(make_app):
    app = make_app(RPC_TIMEOUT=5.0)

    assert rpc_module.pool_for(app, 1.0) is not rpc_module.pool_for(app)
    assert rpc_module.pool_for(app, 1.0).timeout == 1.0
    assert rpc_module.pool_for(app).timeout == 5.0
    assert rpc_module.pool_for(app, 5.0) is rpc_module.pool_for(app)


def test_the_pool_lends_the_one_rpc_client(make_app, monkeypatch):
    monkeypatch.setenv("RPC_CLIENT", "nameko")  # the setting is gone: ignored

    app = make_app()

    assert rpc_module.pool_for(app).client_cls is rpc_module._LeanClient
    assert not hasattr(rpc_module, "_NamekoClient")
