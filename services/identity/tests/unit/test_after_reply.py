"""Work done after the reply (a registration's account) survives a database
that drops its links for a moment: it is retried on a fresh session."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import OperationalError

from identity import service
from kit.errors import InvalidInput, Unavailable


class Sessions:
    def __init__(self):
        self.made = self.closed = 0

    def sessionmaker(self):
        self.made += 1
        return self

    def close(self):
        self.closed += 1


@pytest.fixture
def after_reply(monkeypatch):
    monkeypatch.setattr(service.eventlet, "sleep", lambda seconds: None)
    provider = service.AfterReply()
    provider.database = Sessions()
    return provider


def failing(errors):
    calls = []

    def job(session):
        calls.append(session)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]

    return job, calls


def test_a_job_is_retried_on_a_fresh_session_while_the_database_is_out_of_reach(after_reply):
    lost = OperationalError("INSERT", {}, Exception("server closed the connection"))
    down = Unavailable("service.database_unavailable", "indisponible")
    job, calls = failing([lost, down])
    after_reply.run(job)
    assert len(calls) == 3
    assert after_reply.database.made == after_reply.database.closed == 3


def test_a_job_that_fails_for_another_reason_is_not_run_again(after_reply, caplog):
    job, calls = failing([InvalidInput("x.bad", "non")])
    after_reply.run(job)
    assert len(calls) == 1
    assert "work after the reply failed" in caplog.text


def test_a_job_gives_up_after_its_last_attempt(after_reply, caplog):
    lost = OperationalError("INSERT", {}, Exception("gone"))
    job, calls = failing([lost] * 20)
    after_reply.run(job)
    assert len(calls) == len(service.AFTER_REPLY_RETRY_DELAYS) + 1
    assert "after 7 attempts" in caplog.text
