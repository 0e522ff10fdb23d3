"""The clients the bench measures with, one per thread.

- bare RPC: a standalone ``ClusterRpcProxy``, started once per thread and
  reused for every call (docs/stack-pitfalls.md §12: never one proxy per call);
- gateway: a ``requests.Session`` per thread (keep-alive), with the bearer
  token of the seeded agency admin for ``GET /api/v1/me``.

For the decomposition, ``identity.get_me()`` is also called bare, with the
caller the gateway would send (read from the token's payload, as the gateway
does after checking its signature).
"""

from __future__ import annotations

import json
import warnings
from contextlib import contextmanager

import requests
from itsdangerous import URLSafeSerializer

from bench.load import Client, ClientFactory

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402 - after the filter

RPC_TIMEOUT = 10.0
HTTP_TIMEOUT = 10.0


class HttpStatusError(RuntimeError):
    """An answer other than the expected status; counted as ``HTTP <code>``."""

    def __init__(self, status: int):
        super().__init__(f"HTTP {status}")
        self.kind = f"HTTP {status}"


@contextmanager
def rpc_proxy(amqp_uri: str, timeout: float = RPC_TIMEOUT):
    """A started standalone proxy, stopped on the way out."""
    with ClusterRpcProxy({"AMQP_URI": amqp_uri}, timeout=timeout) as proxy:
        yield proxy


def bare_rpc(
    amqp_uri: str,
    service: str = "bench_trivial",
    method: str = "ping",
    context_data: dict | None = None,
) -> ClientFactory:
    """``<service>.<method>()`` through a proxy of the thread's own."""

    def factory() -> Client:
        holder = ClusterRpcProxy(
            {"AMQP_URI": amqp_uri}, context_data=context_data, timeout=RPC_TIMEOUT
        )
        proxy = holder.start()

        def call() -> object:
            return getattr(getattr(proxy, service), method)()

        return call, holder.stop

    return factory


def caller_context(token: str) -> dict[str, str]:
    """The nameko context data the gateway sends for this token's bearer
    (``kit.context.Caller.to_header``: one JSON string under "caller")."""
    payload = token.rsplit(".", 2)[0]  # payload.timestamp.signature
    claims = URLSafeSerializer("unused").load_payload(payload.encode())
    caller = {
        "user_id": claims.get("uid"),
        "org_id": claims.get("org"),
        "roles": list(claims.get("roles") or ()),
        "request_id": None,
        "managed_org_ids": list(claims.get("managed") or ()),
    }
    return {"caller": json.dumps(caller, separators=(",", ":"))}


def http_get(url: str, headers: dict[str, str] | None = None) -> ClientFactory:
    """``GET url`` through a keep-alive session of the thread's own; any
    status but 200 is an error."""

    def factory() -> Client:
        session = requests.Session()
        session.headers.update(headers or {})

        def call() -> object:
            response = session.get(url, timeout=HTTP_TIMEOUT)
            body = response.content  # read it all, as a real client would
            if response.status_code != 200:
                raise HttpStatusError(response.status_code)
            return body

        return call, session.close

    return factory


def sign_in(gateway_url: str, email: str, password: str) -> str:
    """``POST /api/v1/sessions`` once; the bearer token."""
    response = requests.post(
        f"{gateway_url}/api/v1/sessions",
        json={"email": email, "password": password},
        timeout=HTTP_TIMEOUT,
    )
    if response.status_code != 201:
        raise RuntimeError(f"sign-in failed: HTTP {response.status_code} {response.text[:300]}")
    return response.json()["token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
