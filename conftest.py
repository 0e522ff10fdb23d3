"""Root test configuration.

eventlet must patch the standard library before anything else is imported
(docs/stack-pitfalls.md §2); psycopg must wait through select so it yields to the hub (§7).
"""

import eventlet

eventlet.monkey_patch()

import os  # noqa: E402
import urllib.parse  # noqa: E402
import uuid  # noqa: E402
import warnings  # noqa: E402

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_select")

import pytest  # noqa: E402

PG_ADMIN_DSN = os.environ.get("TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def _pg_admin():
    import psycopg

    return psycopg.connect(PG_ADMIN_DSN, autocommit=True)


@pytest.fixture
def pg_database():
    """Factory: a fresh, empty PostgreSQL database per call, dropped afterwards."""
    created = []

    def make(prefix: str = "t") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with _pg_admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        parts = urllib.parse.urlsplit(PG_ADMIN_DSN)
        return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))

    yield make
    with _pg_admin() as conn:
        for name in created:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def web_session(web_config_port):
    """nameko's fixture imports werkzeug.urls.url_join, gone in Werkzeug 3
    (docs/stack-pitfalls.md §5)."""
    import requests

    class WebSession(requests.Session):
        def request(self, method, url, *args, **kwargs):
            url = urllib.parse.urljoin(f"http://127.0.0.1:{web_config_port}/", url)
            return super().request(method, url, *args, **kwargs)

    session = WebSession()
    yield session
    session.close()
