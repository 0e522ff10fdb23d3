"""A partner's webhook endpoint on the loopback, for tests, benchmarks and a
developer trying the partner interface by hand.

It records every POST (arrival time, headers, body) and can be told to
behave like a partner's real endpoint on a bad day: answer an error, answer
slowly, or be down (nothing listens on its port any more, then the same port
again). Signatures are checked with the ``standardwebhooks`` package when a
secret is given, exactly as a partner would check them.

Library use::

    with Receiver() as receiver:          # http://127.0.0.1:<port>/hook
        receiver.secret = "whsec_…"
        receiver.mode = "fail"            # "ok" | "fail" | "slow"
        receiver.down(); receiver.up()
        receiver.received                 # [Received(at, headers, body, verified)]

Command line: ``python deploy/webhook_receiver.py --port 8700`` prints each
event it receives.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    at: float  # time.time() when the body was read
    headers: dict[str, str]
    body: bytes
    verified: bool | None  # None: no secret to check with

    @property
    def event(self) -> dict:
        return json.loads(self.body)

    @property
    def webhook_id(self) -> str | None:
        return self.headers.get("webhook-id")


class Receiver:
    """One endpoint; ``mode`` and ``delay`` may change at any time."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, path: str = "/hook") -> None:
        self.host, self.port, self.path = host, port, path
        self.mode = "ok"
        self.delay = 5.0  # seconds, in "slow" mode
        self.fail_status = 503
        self.secret: str | None = None
        self.received: list[Received] = []
        self.attempts = 0  # every POST, answered well or not
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"

    def up(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.attempts += 1
                    mode = receiver.mode
                if mode == "slow":
                    time.sleep(receiver.delay)
                if mode == "fail":
                    self._answer(receiver.fail_status, b'{"error": "indisponible"}')
                    return
                headers = {k.lower(): v for k, v in self.headers.items()}
                item = Received(time.time(), headers, body, receiver._verify(body, headers))
                with receiver._lock:
                    receiver.received.append(item)
                self._answer(204, b"")

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if body:
                    self.wfile.write(body)

            def log_message(self, *args):  # quiet
                pass

        server = ThreadingHTTPServer((self.host, self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            name="webhook-receiver",
            kwargs={"poll_interval": 0.1},
            daemon=True,
        )
        self._thread.start()
        return self

    def down(self) -> None:
        """Nothing listens on the port any more (connections are refused)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _verify(self, body: bytes, headers: dict[str, str]) -> bool | None:
        if not self.secret:
            return None
        from standardwebhooks import Webhook

        try:
            Webhook(self.secret).verify(body, headers)
        except Exception:  # noqa: BLE001 - any failure means "not verified"
            return False
        return True

    def ids(self) -> list[str]:
        with self._lock:
            return [r.event["id"] for r in self.received]

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        """At least ``count`` received events (bounded polling)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if len(self.received) >= count:
                    return list(self.received)
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{len(self.received)} of {count} events received "
                    f"at {self.url} within {timeout:.0f} s"
                )
            time.sleep(0.05)

    def __enter__(self) -> Receiver:
        return self.up()

    def __exit__(self, *exc) -> None:
        self.down()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8700)
    parser.add_argument("--secret", default=None, help="whsec_… to verify signatures")
    args = parser.parse_args(argv)
    receiver = Receiver(port=args.port).up()
    receiver.secret = args.secret
    print(json.dumps({"url": receiver.url}), flush=True)
    seen = 0
    try:
        while True:
            time.sleep(0.5)
            for item in receiver.received[seen:]:
                print(
                    json.dumps(
                        {
                            "id": item.event.get("id"),
                            "type": item.event.get("type"),
                            "verified": item.verified,
                        }
                    ),
                    flush=True,
                )
            seen = len(receiver.received)
    except KeyboardInterrupt:
        receiver.down()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
