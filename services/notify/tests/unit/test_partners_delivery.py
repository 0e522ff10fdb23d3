"""Pushing one event: the retry schedule, the Standard Webhooks signature, and
the HTTP client against a real HTTP server on the loopback."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading
import zoneinfo

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from notify.partners import delivery, keys, ssrf

# ---------------------------------------------------------------- the schedule


def test_the_first_retry_waits_the_first_step_of_the_schedule_and_the_last_one_the_last():
    middle = lambda: 0.5  # noqa: E731 - no jitter at the middle of the range
    assert delivery.next_wait(1, rand=middle) == dt.timedelta(seconds=5)
    assert delivery.next_wait(2, rand=middle) == dt.timedelta(seconds=300)
    assert delivery.next_wait(7, rand=middle) == dt.timedelta(seconds=36000)
    waits = [delivery.next_wait(n, rand=middle).total_seconds() for n in range(1, 8)]
    assert waits == [5, 300, 1800, 7200, 18000, 36000, 36000]
    # about 27 hours in all, as the module promises
    assert 26 * 3600 < sum(waits) < 28 * 3600


def test_the_schedule_is_exhausted_after_its_last_step_and_attempt_zero_has_no_wait():
    assert delivery.next_wait(8) is None
    assert delivery.next_wait(0) is None
    assert delivery.next_wait(2, schedule=(1.0,)) is None


def test_each_wait_gets_at_most_ten_percent_of_jitter_either_way():
    low = delivery.next_wait(3, rand=lambda: 0.0).total_seconds()
    high = delivery.next_wait(3, rand=lambda: 0.999999).total_seconds()
    assert low == pytest.approx(1800 * 0.9)
    assert high == pytest.approx(1800 * 1.1, rel=1e-5)
    assert high <= 1800 * 1.1
    # with the real random source, every draw stays in the band and they differ
    draws = {delivery.next_wait(3).total_seconds() for _ in range(200)}
    assert all(1800 * 0.9 <= w < 1800 * 1.1 for w in draws)
    assert len(draws) > 100


def test_a_custom_schedule_is_read_from_seconds_separated_by_commas():
    assert delivery.parse_schedule("1, 2.5,60") == (1.0, 2.5, 60.0)
    assert delivery.parse_schedule("0,10,") == (0.0, 10.0)
    assert delivery.next_wait(2, schedule=(1.0, 2.5), rand=lambda: 0.5).total_seconds() == 2.5


def test_an_empty_schedule_setting_means_the_default_schedule():
    assert delivery.parse_schedule("") == delivery.SCHEDULE
    assert delivery.parse_schedule(None) == delivery.SCHEDULE


@pytest.mark.parametrize("value", [" , ", "5,-1", "abc", "5,dix", "nan", "5,inf", "1e400"])
def test_a_schedule_that_is_not_a_list_of_finite_positive_durations_is_refused(value):
    with pytest.raises(ValueError, match="WEBHOOK_RETRY_SCHEDULE"):
        delivery.parse_schedule(value)


# ---------------------------------------------------------------- signatures

BODY = json.dumps({"id": "evt-1", "data": {"siret": "41816609600051"}}, separators=(",", ":"))


def test_a_signed_body_verifies_with_the_standardwebhooks_library():
    secret = keys.new_webhook_secret()
    now = dt.datetime.now(dt.UTC)
    headers = delivery.sign([secret], "evt-1", now, BODY)
    assert headers["webhook-id"] == "evt-1"
    assert headers["webhook-timestamp"] == str(int(now.timestamp()))
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)


def test_during_a_rotation_each_signature_verifies_with_its_own_secret():
    new, old = keys.new_webhook_secret(), keys.new_webhook_secret()
    headers = delivery.sign([new, old], "evt-2", dt.datetime.now(dt.UTC), BODY)
    signatures = headers["webhook-signature"].split(" ")
    assert len(signatures) == 2
    Webhook(new).verify(BODY, headers)
    Webhook(old).verify(BODY, headers)
    # and each signature alone verifies with its own secret only
    for mine, other, sig in ((new, old, signatures[0]), (old, new, signatures[1])):
        alone = dict(headers, **{"webhook-signature": sig})
        Webhook(mine).verify(BODY, alone)
        with pytest.raises(WebhookVerificationError):
            Webhook(other).verify(BODY, alone)


def test_a_tampered_body_or_a_foreign_secret_fails_verification():
    secret = keys.new_webhook_secret()
    headers = delivery.sign([secret], "evt-3", dt.datetime.now(dt.UTC), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace("41816609600051", "41816609600052"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, dict(headers, **{"webhook-id": "evt-4"}))
    with pytest.raises(WebhookVerificationError):
        Webhook(keys.new_webhook_secret()).verify(BODY, headers)


def test_a_signature_made_with_a_time_outside_utc_still_verifies():
    secret = keys.new_webhook_secret()
    paris = dt.datetime.now(zoneinfo.ZoneInfo("Europe/Paris"))
    headers = delivery.sign([secret], "evt-5", paris, BODY)
    assert headers["webhook-timestamp"] == str(int(paris.timestamp()))
    Webhook(secret).verify(BODY, headers)


def test_the_body_sent_is_compact_json_keeping_accents():
    assert delivery.body_of({"a": "Académie", "b": [1]}) == '{"a":"Académie","b":[1]}'


# ---------------------------------------------------------------- the HTTP client


class Receiver:
    """A partner's endpoint on 127.0.0.1: records requests, answers as told."""

    def __init__(self):
        self.requests: list[dict] = []
        self.status = 204
        self.body = b""
        self.headers: dict[str, str] = {}
        self.stall = threading.Event()  # set: answer; clear: hang until released
        self.stall.set()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                receiver.requests.append(
                    {
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": self.rfile.read(length),
                    }
                )
                receiver.stall.wait(5)
                self.send_response(receiver.status)
                for name, value in receiver.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(receiver.body)))
                self.end_headers()
                self.wfile.write(receiver.body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def target(self, path="/hooks/formation?x=1", host="127.0.0.1") -> ssrf.Target:
        return ssrf.Target("http", host, self.port, path, "127.0.0.1")

    def close(self):
        self.stall.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def test_a_2xx_answer_is_a_success_and_the_request_carries_body_and_signature(receiver):
    secret = keys.new_webhook_secret()
    receiver.status, receiver.body = 200, b'{"ok":true}'
    headers = delivery.sign([secret], "evt-1", dt.datetime.now(dt.UTC), BODY)
    outcome = delivery.WebhookClient(timeout=5).post(receiver.target(), BODY.encode(), headers)
    assert outcome.ok is True
    assert outcome.status == 200
    assert outcome.excerpt == '{"ok":true}'
    assert outcome.error is None
    assert outcome.latency_ms >= 0
    (seen,) = receiver.requests
    assert seen["path"] == "/hooks/formation?x=1"
    assert seen["body"] == BODY.encode()
    assert seen["headers"]["Content-Type"] == "application/json"
    assert seen["headers"]["User-Agent"] == delivery.USER_AGENT
    assert seen["headers"]["Host"] == f"127.0.0.1:{receiver.port}"
    assert Webhook(secret).verify(seen["body"], seen["headers"]) == json.loads(BODY)


def test_a_5xx_answer_is_a_failure_with_its_status_and_an_excerpt_of_500_bytes(receiver):
    receiver.status = 503
    receiver.body = b"indisponible " + b"x" * 2000
    outcome = delivery.WebhookClient(timeout=5).post(receiver.target(), b"{}", {})
    assert outcome.ok is False
    assert outcome.status == 503
    assert outcome.error == "réponse HTTP 503"
    assert len(outcome.excerpt.encode()) == delivery.EXCERPT == 500
    assert outcome.excerpt == receiver.body[:500].decode()


def test_the_connection_is_reused_after_a_short_answer(receiver):
    client = delivery.WebhookClient(timeout=5)
    for _ in range(3):
        assert client.post(receiver.target(), b"{}", {}).ok
    assert len(receiver.requests) == 3
    assert len(client.pools) == 1


def test_a_partner_that_does_not_answer_in_time_is_a_timeout(receiver):
    receiver.stall.clear()
    outcome = delivery.WebhookClient(timeout=0.3).post(receiver.target(), b"{}", {})
    assert outcome.ok is False
    assert outcome.status is None
    assert outcome.error.startswith("délai dépassé")
    assert 250 <= outcome.latency_ms < 3000


def test_a_redirect_is_not_followed_and_is_recorded_as_a_failure(receiver):
    receiver.status = 302
    receiver.headers = {"Location": f"http://127.0.0.1:{receiver.port}/elsewhere"}
    outcome = delivery.WebhookClient(timeout=5).post(receiver.target(), b"{}", {})
    assert outcome.ok is False
    assert outcome.status == 302
    assert outcome.error == "réponse HTTP 302 (redirection non suivie)"
    assert [r["path"] for r in receiver.requests] == ["/hooks/formation?x=1"]


def test_a_closed_port_is_recorded_as_a_refused_connection():
    probe = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    port = probe.server_address[1]
    probe.server_close()
    target = ssrf.Target("http", "127.0.0.1", port, "/", "127.0.0.1")
    outcome = delivery.WebhookClient(timeout=2).post(target, b"{}", {})
    assert outcome.ok is False
    assert outcome.status is None
    assert outcome.error == "connexion refusée"


def test_the_client_connects_to_the_checked_address_and_names_the_host_in_the_header(receiver):
    # the name does not resolve anywhere: only the pinned address can be reached
    name = "hooks.partenaire.invalid"
    target = ssrf.check(
        f"http://{name}:{receiver.port}/in",
        ssrf.Allowed.parse("127.0.0.0/8"),
        resolve=lambda host, port: ["127.0.0.1"],
    )
    assert target.address == "127.0.0.1"
    outcome = delivery.WebhookClient(timeout=5).post(target, b"{}", {})
    assert outcome.ok, outcome
    assert receiver.requests[0]["headers"]["Host"] == f"{name}:{receiver.port}"
