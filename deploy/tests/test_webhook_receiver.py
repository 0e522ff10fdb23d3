"""The loopback webhook receiver behaves like a partner's endpoint: it records
what it gets, verifies Standard Webhooks signatures, fails, and goes down."""

from __future__ import annotations

import json
import time

import pytest
import requests
from standardwebhooks import Webhook

from deploy.webhook_receiver import Receiver

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def signed(body: bytes, msg_id: str = "evt_1") -> dict:
    stamp = int(time.time())
    signature = Webhook(SECRET).sign(msg_id, _dt(stamp), body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": signature,
        "Content-Type": "application/json",
    }


def _dt(stamp: int):
    import datetime as dt

    return dt.datetime.fromtimestamp(stamp, tz=dt.UTC)


@pytest.fixture
def receiver():
    with Receiver() as running:
        running.secret = SECRET
        yield running


def test_an_event_signed_with_the_secret_is_recorded_as_verified(receiver):
    body = json.dumps({"id": "evt_1", "type": "t"}).encode()

    answer = requests.post(receiver.url, data=body, headers=signed(body), timeout=5)

    assert answer.status_code == 204
    [got] = receiver.wait_for(1)
    assert (got.verified, got.webhook_id, got.event["id"]) == (True, "evt_1", "evt_1")


def test_a_tampered_body_is_recorded_as_not_verified(receiver):
    body = json.dumps({"id": "evt_2"}).encode()

    requests.post(receiver.url, data=body + b" ", headers=signed(body, "evt_2"), timeout=5)

    assert receiver.wait_for(1)[0].verified is False


def test_in_fail_mode_it_answers_an_error_and_records_nothing(receiver):
    receiver.mode = "fail"

    answer = requests.post(receiver.url, data=b"{}", timeout=5)

    assert answer.status_code == 503 and receiver.received == [] and receiver.attempts == 1


def test_down_refuses_connections_and_up_listens_on_the_same_port_again(receiver):
    url = receiver.url
    receiver.down()
    with pytest.raises(requests.ConnectionError):
        requests.post(url, data=b"{}", timeout=2)

    receiver.up()

    assert receiver.url == url
    assert requests.post(url, data=b'{"id": "x"}', timeout=5).status_code == 204
