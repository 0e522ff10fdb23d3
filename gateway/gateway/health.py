"""Liveness and readiness of the gateway, for load balancers and operators.

``/health/live`` answers without touching anything (the process serves HTTP).
``/health/ready`` checks the broker, then calls ``health()`` on every service
of ``SERVICES`` at once, each in its own thread with its own short-timeout
client, so the whole check is bounded by about ``HEALTH_RPC_TIMEOUT`` + 0.5 s
whatever is down (a service with no consumer answers at once: see
``gateway.amqp_rpc``). It also reports the age of this process's revocation
list and its bound (``REVOCATION_MAX_STALENESS``); a stale list does not make
the gateway unready by itself (identity down already does, and anonymous
pages are still served), it says why signed-in requests answer 503.
"""

from __future__ import annotations

import threading
import time

from flask import Blueprint, Response, current_app, jsonify
from kombu import Connection
from nameko.exceptions import RpcTimeout

from gateway import rpc as rpc_module
from gateway.errors import RETRY_AFTER_SERVICE, current_request_id
from kit.context import SYSTEM, Caller

bp = Blueprint("health", __name__, url_prefix="/health")

OK, UNAVAILABLE, TIMEOUT = "ok", "unavailable", "timeout"
GRACE = 0.5  # seconds on top of the RPC timeout for thread start and connect


@bp.get("/live")
def live() -> Response:
    """200 ``{"status": "ok"}`` while the process serves requests; no I/O."""
    return jsonify(status=OK)


def broker_reachable(uri: str, timeout: float) -> bool:
    """One connection attempt per node (``AMQP_URI`` may list a cluster's nodes,
    ``;``-separated: kombu moves to the next one at once), no retry."""
    connection = Connection(uri, connect_timeout=timeout)
    try:
        connection.ensure_connection(max_retries=max(len(connection.alt or ()) - 1, 0))
        return True
    except Exception:
        return False
    finally:
        connection.release()


def _check(
    pool: rpc_module.RpcPool, caller: Caller, service: str, results: dict, answers: dict
) -> None:
    try:
        with rpc_module.lend(pool, caller) as client:
            answers[service] = client[service].health()
        results[service] = OK
    except RpcTimeout:
        results[service] = TIMEOUT
    except Exception:
        # unknown service, broker gone, or its own health check failed
        results[service] = UNAVAILABLE


def revocations_state() -> dict:
    """``{"status": "ok"|"stale"|"loading", "age_seconds", "max_staleness_seconds"}``."""
    revocations = current_app.extensions.get("revocations")
    if revocations is None:
        return {"status": UNAVAILABLE}
    revocations.ensure_started()
    age = revocations.age()
    bound = revocations.max_staleness
    if age is None:
        status = "loading"
    else:
        status = OK if age <= bound else "stale"
    return {
        "status": status,
        "age_seconds": None if age is None else round(age, 3),
        "max_staleness_seconds": bound,
    }


def check_services(
    services: list[str], timeout: float, caller: Caller, answers: dict | None = None
) -> dict[str, str]:
    """``{service: "ok" | "unavailable" | "timeout"}``, all checked concurrently;
    ``answers`` (given) receives each service's ``health()`` answer."""
    pool = rpc_module.pool_for(current_app._get_current_object(), timeout)
    results: dict[str, str] = {}
    answers = {} if answers is None else answers
    threads = [
        threading.Thread(
            target=_check,
            args=(pool, caller, name, results, answers),
            name=f"health-{name}",
            daemon=True,
        )
        for name in services
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout + GRACE
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return {name: results.get(name, TIMEOUT) for name in services}


@bp.get("/ready")
def ready() -> tuple[Response, int] | tuple[Response, int, dict]:
    """200 when the broker and every service answer ``health()``, else 503.

    Body: ``{"status": "ok"|"unavailable", "broker": ..., "services": {name: state},
    "revocations": {"status", "age_seconds", "max_staleness_seconds"},
    "scanner": "ok"|"unreachable"|"disabled"|"unknown"}``. ``scanner`` is the
    malware scanner's state as files sees it: ``disabled`` says uploads are
    not scanned (``FILES_CLAMD`` unset), ``unreachable`` that uploads answer
    503 until clamd is back; neither makes the gateway unready (the rest of
    the platform works), ``unknown`` when files did not answer.
    """
    config = current_app.config
    timeout = float(config["HEALTH_RPC_TIMEOUT"])
    services = list(config["SERVICES"])
    if not broker_reachable(config["AMQP_URI"], timeout):
        states = {name: UNAVAILABLE for name in services}
        body = {
            "status": UNAVAILABLE,
            "broker": UNAVAILABLE,
            "services": states,
            "revocations": revocations_state(),
        }
        return jsonify(body), 503, {"Retry-After": str(RETRY_AFTER_SERVICE)}
    caller = Caller(roles=(SYSTEM,), request_id=current_request_id())
    answers: dict = {}
    states = check_services(services, timeout, caller, answers)
    healthy = all(state == OK for state in states.values())
    body = {
        "status": OK if healthy else UNAVAILABLE,
        "broker": OK,
        "services": states,
        "revocations": revocations_state(),
    }
    if "files" in services:
        answer = answers.get("files")
        scanner = answer.get("scanner") if isinstance(answer, dict) else None
        body["scanner"] = scanner or "unknown"
    if healthy:
        return jsonify(body), 200
    return jsonify(body), 503, {"Retry-After": str(RETRY_AFTER_SERVICE)}
