"""Fixtures of the notify tests: an in-memory database and the mail catcher.

The mail catcher runs as a subprocess (deploy/mailcatcher.py, ports chosen
by the system): the test process is monkey-patched by eventlet, and a
subprocess also exercises the command line developers use.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import eventlet
import pytest
import requests
from sqlalchemy.orm import sessionmaker

from kit.db import make_engine
from notify.models import Base

ROOT = Path(__file__).resolve().parents[3]
CATCHER_SCRIPT = ROOT / "deploy" / "mailcatcher.py"


@pytest.fixture
def session():
    """A session on an empty in-memory SQLite database, as the service makes them."""
    engine = make_engine("sqlite://")
    Base.metadata.create_all(engine)
    db = sessionmaker(engine, expire_on_commit=False)()
    yield db
    db.close()
    engine.dispose()


class Catcher:
    """Reads a running mail catcher through its HTTP API."""

    def __init__(self, process: subprocess.Popen, host: str, smtp: int, http: int) -> None:
        self.process = process
        self.host = host
        self.smtp_port = smtp
        self.http_port = http
        self.smtp_url = f"smtp://{host}:{smtp}"
        self.http_url = f"http://{host}:{http}"

    def messages(self, to: str | None = None) -> list[dict]:
        params = {"to": to} if to else None
        response = requests.get(f"{self.http_url}/api/messages", params=params, timeout=5)
        response.raise_for_status()
        return response.json()

    def clear(self) -> None:
        requests.delete(f"{self.http_url}/api/messages", timeout=5).raise_for_status()


def start_catcher(*args: str) -> Catcher:
    """Starts the script on free ports and waits for its first line."""
    process = subprocess.Popen(
        [sys.executable, str(CATCHER_SCRIPT), "--smtp-port", "0", "--http-port", "0", *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        with eventlet.Timeout(15):
            ports = json.loads(process.stdout.readline())
    except BaseException:
        stop_catcher(process)
        raise
    return Catcher(process, "127.0.0.1", ports["smtp"], ports["http"])


def stop_catcher(process: subprocess.Popen) -> int:
    process.terminate()
    try:
        return process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise
    finally:
        if process.stdout:
            process.stdout.close()


@pytest.fixture(scope="session")
def _catcher_process():
    catcher = start_catcher()
    yield catcher
    stop_catcher(catcher.process)


@pytest.fixture
def mailcatcher(_catcher_process) -> Catcher:
    """The shared mail catcher, emptied for each test."""
    assert _catcher_process.process.poll() is None, "the mail catcher has stopped"
    _catcher_process.clear()
    return _catcher_process
