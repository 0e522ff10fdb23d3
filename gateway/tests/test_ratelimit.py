"""Rate limits: a burst is allowed, then 429 ``rate_limited`` with Retry-After."""

from __future__ import annotations

import eventlet.patcher
import pytest

from gateway.errors import PROBLEM_JSON
from gateway.ratelimit import TokenBucketLimiter, client_ip, limit


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_allows_per_minute_hits_then_says_how_long_to_wait():
    clock = FakeClock()
    limiter = TokenBucketLimiter(per_minute=10, clock=clock)

    assert [limiter.hit("ip") for _ in range(10)] == [0.0] * 10
    assert limiter.hit("ip") == pytest.approx(6.0)  # one token every 6 s


def test_tokens_come_back_with_time():
    clock = FakeClock()
    limiter = TokenBucketLimiter(per_minute=10, clock=clock)
    for _ in range(10):
        limiter.hit("ip")

    clock.now += 6.0
    assert limiter.hit("ip") == 0.0
    assert limiter.hit("ip") > 0


def test_refused_hits_do_not_consume_tokens():
    clock = FakeClock()
    limiter = TokenBucketLimiter(per_minute=60, burst=1, clock=clock)
    limiter.hit("ip")
    for _ in range(5):
        limiter.hit("ip")

    clock.now += 1.0
    assert limiter.hit("ip") == 0.0


def test_keys_are_independent():
    limiter = TokenBucketLimiter(per_minute=1, clock=FakeClock())

    assert limiter.hit("a") == 0.0
    assert limiter.hit("b") == 0.0
    assert limiter.hit("a") > 0


def test_memory_is_bounded_by_evicting_the_least_recent_keys():
    clock = FakeClock()
    limiter = TokenBucketLimiter(per_minute=1, max_keys=100, clock=clock)
    limiter.hit("victim")
    for n in range(1000):
        limiter.hit(f"flood-{n}")
        limiter.hit("victim")  # recently seen: kept

    assert len(limiter) == 100
    assert limiter.hit("victim") > 0


def test_concurrent_hits_never_exceed_the_burst():
    # real OS threads, as in gthread workers (the test process is eventlet-patched)
    threading = eventlet.patcher.original("threading")
    limiter = TokenBucketLimiter(per_minute=50, clock=FakeClock())
    allowed = []

    def worker():
        for _ in range(20):
            if limiter.hit("ip") == 0.0:
                allowed.append(1)

    threads = [threading.Thread(target=worker) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(allowed) == 50


@pytest.fixture
def limited_app(make_app):
    def make(**settings):
        app = make_app(**settings)

        @app.post("/api/v1/_signin")
        @limit("signin", per_minute=3, key=client_ip)
        def signin():
            return {"ok": True}

        @app.get("/api/v1/_ip")
        def ip():
            return {"ip": client_ip()}

        return app

    return make


def test_the_decorator_answers_429_rate_limited_with_retry_after(limited_app):
    client = limited_app().test_client()

    statuses = [client.post("/api/v1/_signin").status_code for _ in range(3)]
    response = client.post("/api/v1/_signin")

    assert statuses == [200, 200, 200]
    assert response.status_code == 429
    assert response.mimetype == PROBLEM_JSON
    assert response.get_json()["code"] == "rate_limited"
    assert 1 <= int(response.headers["Retry-After"]) <= 20


def test_each_client_address_has_its_own_budget(limited_app):
    client = limited_app().test_client()
    for _ in range(3):
        client.post("/api/v1/_signin", environ_base={"REMOTE_ADDR": "10.0.0.1"})

    other = client.post("/api/v1/_signin", environ_base={"REMOTE_ADDR": "10.0.0.2"})

    assert other.status_code == 200


def test_limits_can_be_switched_off(limited_app):
    client = limited_app(RATELIMIT_ENABLED=False).test_client()

    assert {client.post("/api/v1/_signin").status_code for _ in range(10)} == {200}


def test_each_app_has_its_own_counters(limited_app):
    first = limited_app().test_client()
    for _ in range(4):
        first.post("/api/v1/_signin")

    assert limited_app().test_client().post("/api/v1/_signin").status_code == 200


def test_forwarded_for_is_ignored_without_trusted_proxies(limited_app):
    client = limited_app().test_client()

    response = client.get(
        "/api/v1/_ip",
        headers={"X-Forwarded-For": "203.0.113.9"},
        environ_base={"REMOTE_ADDR": "10.0.0.1"},
    )

    assert response.get_json() == {"ip": "10.0.0.1"}


def test_a_spoofed_forwarded_for_cannot_escape_the_limit(limited_app):
    client = limited_app().test_client()
    statuses = [
        client.post("/api/v1/_signin", headers={"X-Forwarded-For": f"198.51.100.{n}"}).status_code
        for n in range(5)
    ]

    assert statuses[-1] == 429


@pytest.mark.parametrize(
    ("trusted", "header", "expected"),
    [
        (1, "203.0.113.9", "203.0.113.9"),
        (1, "6.6.6.6, 203.0.113.9", "203.0.113.9"),  # leftmost is client-controlled
        (2, "6.6.6.6, 203.0.113.9, 10.0.0.5", "203.0.113.9"),
        (1, "not-an-ip", "10.0.0.1"),
        (1, "", "10.0.0.1"),
    ],
)
def test_forwarded_for_is_honoured_for_trusted_proxies(limited_app, trusted, header, expected):
    client = limited_app(TRUSTED_PROXIES=trusted).test_client()

    response = client.get(
        "/api/v1/_ip", headers={"X-Forwarded-For": header}, environ_base={"REMOTE_ADDR": "10.0.0.1"}
    )

    assert response.get_json() == {"ip": expected}
