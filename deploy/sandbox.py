"""Throw-away parts on the local servers: a RabbitMQ vhost (created through
the management API) and one PostgreSQL database per service.

The e2e tests and the benchmarks each start the whole system on their own
vhost and databases, so that nothing left by another run can interfere, and
remove them at the end.
"""

from __future__ import annotations

import urllib.parse

import requests

from deploy.launcher import SERVICES, LaunchError


def _rabbit_api(rabbit_api: str) -> tuple[str, tuple[str, str]]:
    parts = urllib.parse.urlsplit(rabbit_api)
    netloc = f"{parts.hostname}:{parts.port or 15672}"
    base = urllib.parse.urlunsplit(parts._replace(netloc=netloc)).rstrip("/")
    return base, (parts.username or "guest", parts.password or "guest")


def with_vhost(amqp_uri: str, name: str) -> str:
    """``amqp_uri`` (one node, or a cluster's nodes ``;``-separated) pointing at vhost ``name``."""
    path = "/" + urllib.parse.quote(name, safe="")
    return ";".join(
        urllib.parse.urlunsplit(urllib.parse.urlsplit(one.strip())._replace(path=path))
        for one in amqp_uri.split(";")
        if one.strip()
    )


def create_vhost(name: str, amqp_uri: str, rabbit_api: str) -> str:
    """Creates vhost ``name`` for the user of ``amqp_uri`` through the
    management API ``rabbit_api`` (of any node: a cluster shares its vhosts);
    returns the AMQP URI pointing at it (every node of a ``;``-separated list).
    Raises ``LaunchError`` if the management API refuses."""
    base, auth = _rabbit_api(rabbit_api)
    user = urllib.parse.urlsplit(amqp_uri.split(";")[0].strip()).username or "guest"
    try:
        requests.put(f"{base}/api/vhosts/{name}", auth=auth, timeout=10).raise_for_status()
        requests.put(
            f"{base}/api/permissions/{name}/{user}",
            auth=auth,
            timeout=10,
            json={"configure": ".*", "write": ".*", "read": ".*"},
        ).raise_for_status()
    except requests.RequestException as exc:
        raise LaunchError(
            f"cannot create a RabbitMQ vhost through {base} ({exc}); "
            "is rabbitmq_management enabled? (bash deploy/test.sh does it)"
        ) from None
    return with_vhost(amqp_uri, name)


def delete_vhost(name: str, rabbit_api: str) -> None:
    base, auth = _rabbit_api(rabbit_api)
    requests.delete(f"{base}/api/vhosts/{name}", auth=auth, timeout=30)


def create_databases(prefix: str, created: list[str], pg_admin_dsn: str) -> dict[str, str]:
    """One database per service, named ``<prefix>_<service>``; returns the
    ``<SERVICE>_DB_URL`` variables. ``created`` lists them as they appear, so
    the caller can drop them even after a failure half-way."""
    import psycopg

    try:
        with psycopg.connect(pg_admin_dsn, autocommit=True, connect_timeout=10) as conn:
            for service in SERVICES:
                name = f"{prefix}_{service}"
                conn.execute(f'CREATE DATABASE "{name}"')
                created.append(name)
    except psycopg.Error as exc:
        raise LaunchError(f"cannot create databases through {pg_admin_dsn} ({exc})") from None
    parts = urllib.parse.urlsplit(pg_admin_dsn)
    return {
        f"{service.upper()}_DB_URL": urllib.parse.urlunsplit(
            parts._replace(path=f"/{prefix}_{service}")
        )
        for service in SERVICES
    }


def drop_databases(names: list[str], pg_admin_dsn: str) -> None:
    import psycopg

    if not names:
        return
    with psycopg.connect(pg_admin_dsn, autocommit=True, connect_timeout=10) as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
