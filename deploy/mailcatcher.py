"""A local mail catcher for development and tests.

The platform sends e-mail through one SMTP adapter (services/notify); on a
developer machine or in CI nothing must leave the machine, yet people and tests
need to read what was sent (confirmation links, invitations). This process
accepts every message over SMTP (aiosmtpd), keeps the last 1,000 in memory and
shows them over HTTP:

- ``GET /``                    French HTML list of the messages
- ``GET /messages/<id>``       one message, links made clickable
- ``GET /api/messages``        JSON ``[{"id", "from", "to", "subject", "date", "text", "html"}]``,
                               newest first; ``?to=<address>`` keeps one recipient's
- ``GET /api/messages/<id>``   one message (404 if unknown)
- ``DELETE /api/messages``     forget every message

Run: ``python deploy/mailcatcher.py --smtp-port 8625 --http-port 8680 [--host 127.0.0.1]``.
A port of 0 picks a free one; the first stdout line is always the chosen ports
as JSON (``{"smtp": 41234, "http": 41235}``) so a test can start it and read
where it listens. SIGINT and SIGTERM stop it cleanly (exit code 0).

In-process use: ``MailCatcher(host, smtp_port=0, http_port=0).start()`` then
``.messages(to=None)``, ``.clear()``, ``.stop()``. Under eventlet's monkey
patching (the test process) asyncio does not run reliably in a thread: start
the script as a subprocess there instead.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import email
import email.policy
import html
import itertools
import json
import logging
import re
import signal
import socket
import sys
import threading
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.smtp import SMTP, AuthResult

MAX_MESSAGES = 1000
MAX_MESSAGE_BYTES = 10 * 1024 * 1024


class MailStore:
    """The last ``limit`` messages, safe to share between the SMTP and HTTP threads."""

    def __init__(self, limit: int = MAX_MESSAGES) -> None:
        self._messages: collections.deque[dict] = collections.deque(maxlen=limit)
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def add(self, mail_from: str, rcpt_tos: list[str], raw: bytes) -> dict:
        message = parse_message(mail_from, rcpt_tos, raw)
        with self._lock:
            message["id"] = str(next(self._ids))
            self._messages.append(message)
        return message

    def list(self, to: str | None = None) -> list[dict]:
        with self._lock:
            messages = list(reversed(self._messages))
        if to:
            wanted = to.strip().lower()
            messages = [m for m in messages if wanted in (a.lower() for a in m["to"])]
        return messages

    def get(self, message_id: str) -> dict | None:
        with self._lock:
            for message in self._messages:
                if message["id"] == message_id:
                    return message
        return None

    def clear(self) -> int:
        with self._lock:
            count = len(self._messages)
            self._messages.clear()
        return count


def parse_message(mail_from: str, rcpt_tos: list[str], raw: bytes) -> dict:
    """The fields people and tests look at, with bodies decoded to text."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    return {
        "id": None,
        "from": str(msg.get("From") or mail_from or ""),
        "to": list(rcpt_tos),
        "subject": str(msg.get("Subject") or ""),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "text": _body(msg, "plain"),
        "html": _body(msg, "html"),
    }


def _body(msg, subtype: str) -> str | None:
    part = msg.get_body(preferencelist=(subtype,))
    if part is None:
        return None
    try:
        content = part.get_content()
    except (LookupError, UnicodeDecodeError):  # unknown or lying charset
        content = part.get_payload(decode=True).decode("utf-8", "replace")
    return content.replace("\r\n", "\n")


class _Handler:
    """aiosmtpd handler: every message is accepted and stored."""

    def __init__(self, store: MailStore) -> None:
        self.store = store

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd API
        self.store.add(envelope.mail_from, envelope.rcpt_tos, envelope.original_content)
        return "250 Message accepted for delivery"


def _accept_any_login(server, session, envelope, mechanism, auth_data):
    # A catcher, not a relay: any user name and password are accepted, so the
    # sender's authenticated path (smtp://user:pass@host) can be exercised too.
    return AuthResult(success=True)


class _SMTPThread(threading.Thread):
    """An asyncio loop serving SMTP on an already bound socket."""

    def __init__(self, sock: socket.socket, store: MailStore) -> None:
        super().__init__(name="mailcatcher-smtp", daemon=True)
        self.sock = sock
        self.handler = _Handler(store)
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._server = None

    def _factory(self):
        return SMTP(
            self.handler,
            data_size_limit=MAX_MESSAGE_BYTES,
            enable_SMTPUTF8=True,
            auth_require_tls=False,
            authenticator=_accept_any_login,
            hostname="mailcatcher.localhost",
        )

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self._server = self.loop.run_until_complete(
                self.loop.create_server(self._factory, sock=self.sock)
            )
        except BaseException as exc:  # reported to start()
            self.error = exc
            self.ready.set()
            return
        self.ready.set()
        try:
            self.loop.run_forever()
        finally:
            self._server.close()
            self.loop.run_until_complete(self._server.wait_closed())
            for task in asyncio.all_tasks(self.loop):
                task.cancel()
            self.loop.run_until_complete(asyncio.sleep(0))
            self.loop.close()

    def shutdown(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.join(timeout=5)


_URL = re.compile(r"https?://[^\s<>\"']+")

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
h1 { font-size: 1.4rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .4rem .6rem; border-bottom: 1px solid #ddd; }
th { background: #f3f3f3; }
pre { white-space: pre-wrap; background: #fafafa; padding: 1rem; border: 1px solid #ddd; }
.empty { color: #666; }
dt { font-weight: bold; } dd { margin: 0 0 .5rem 0; }
"""


def _page(title: str, body: str) -> bytes:
    return (
        '<!doctype html><html lang="fr"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>"
        f"<body>{body}</body></html>"
    ).encode()


def _list_page(messages: list[dict]) -> bytes:
    if not messages:
        rows = '<p class="empty">Aucun message reçu pour le moment.</p>'
    else:
        lines = "".join(
            '<tr><td>{to}</td><td><a href="/messages/{id}">{subject}</a></td>'
            "<td>{date}</td></tr>".format(
                to=html.escape(", ".join(m["to"])),
                id=urllib.parse.quote(m["id"]),
                subject=html.escape(m["subject"] or "(sans objet)"),
                date=html.escape(m["date"]),
            )
            for m in messages
        )
        rows = (
            "<table><thead><tr><th>Destinataire</th><th>Objet</th><th>Reçu le (UTC)</th>"
            f"</tr></thead><tbody>{lines}</tbody></table>"
        )
    return _page(
        "Courriels reçus",
        f"<h1>Courriels reçus ({len(messages)})</h1>"
        "<p>Messages interceptés localement : aucun n'a été réellement envoyé.</p>" + rows,
    )


def _linkify(text: str) -> str:
    escaped = html.escape(text)
    return _URL.sub(lambda m: f'<a href="{m.group(0)}">{m.group(0)}</a>', escaped)


def _message_page(m: dict) -> bytes:
    body = _linkify(m["text"]) if m["text"] is not None else "(pas de version texte)"
    return _page(
        m["subject"] or "(sans objet)",
        '<p><a href="/">← Tous les messages</a></p>'
        f"<h1>{html.escape(m['subject'] or '(sans objet)')}</h1>"
        f"<dl><dt>De</dt><dd>{html.escape(m['from'])}</dd>"
        f"<dt>À</dt><dd>{html.escape(', '.join(m['to']))}</dd>"
        f"<dt>Reçu le (UTC)</dt><dd>{html.escape(m['date'])}</dd></dl>"
        f"<pre>{body}</pre>",
    )


def _make_http_handler(store: MailStore):
    class Handler(BaseHTTPRequestHandler):
        server_version = "mailcatcher"

        def log_message(self, format, *args):  # noqa: A002 - stdlib signature
            pass  # quiet: tests and developers read the messages, not the access log

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, data) -> None:
            body = json.dumps(data, ensure_ascii=False).encode()
            self._send(status, body, "application/json; charset=utf-8")

        def _not_found(self) -> None:
            if self.path.startswith("/api/"):
                self._json(404, {"error": "not_found", "message": "Message introuvable."})
            else:
                self._send(
                    404,
                    _page("Introuvable", "<h1>Page introuvable</h1>"),
                    "text/html; charset=utf-8",
                )

        def do_GET(self):  # noqa: N802 - stdlib API
            url = urllib.parse.urlsplit(self.path)
            path = url.path.rstrip("/") or "/"
            query = urllib.parse.parse_qs(url.query)
            if path == "/":
                self._send(200, _list_page(store.list()), "text/html; charset=utf-8")
            elif path == "/api/messages":
                self._json(200, store.list(to=(query.get("to") or [None])[0]))
            elif path.startswith("/api/messages/"):
                message = store.get(urllib.parse.unquote(path.rsplit("/", 1)[1]))
                if message:
                    self._json(200, message)
                else:
                    self._not_found()
            elif path.startswith("/messages/"):
                message = store.get(urllib.parse.unquote(path.rsplit("/", 1)[1]))
                if message:
                    self._send(200, _message_page(message), "text/html; charset=utf-8")
                else:
                    self._not_found()
            else:
                self._not_found()

        do_HEAD = do_GET

        def do_DELETE(self):  # noqa: N802 - stdlib API
            if urllib.parse.urlsplit(self.path).path.rstrip("/") == "/api/messages":
                self._json(200, {"deleted": store.clear()})
            else:
                self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"", "text/plain")

    return Handler


class MailCatcher:
    """SMTP in, HTTP out, messages in memory. ``start()`` returns ``self``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        smtp_port: int = 0,
        http_port: int = 0,
        limit: int = MAX_MESSAGES,
    ) -> None:
        self.host = host
        self.store = MailStore(limit)
        self._smtp_port = smtp_port
        self._http_port = http_port
        self._smtp: _SMTPThread | None = None
        self._http: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None

    @property
    def smtp_port(self) -> int:
        return self._smtp.sock.getsockname()[1] if self._smtp else self._smtp_port

    @property
    def http_port(self) -> int:
        return self._http.server_address[1] if self._http else self._http_port

    @property
    def smtp_url(self) -> str:
        return f"smtp://{self.host}:{self.smtp_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    def start(self) -> MailCatcher:
        # aiosmtpd logs a deprecation warning at every AUTH it accepts
        logging.getLogger("mail.log").setLevel(logging.ERROR)
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self._smtp_port))
            sock.listen(100)
        except OSError:
            sock.close()
            raise
        self._smtp = _SMTPThread(sock, self.store)
        self._smtp.start()
        self._smtp.ready.wait(10)
        if self._smtp.error is not None:
            error, self._smtp = self._smtp.error, None
            raise error
        try:
            self._http = ThreadingHTTPServer(
                (self.host, self._http_port), _make_http_handler(self.store)
            )
        except OSError:
            self.stop()
            raise
        self._http.daemon_threads = True
        self._http_thread = threading.Thread(
            target=self._http.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="mailcatcher-http",
            daemon=True,
        )
        self._http_thread.start()
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._smtp is not None:
            self._smtp.shutdown()
            self._smtp.sock.close()
            self._smtp = None

    def messages(self, to: str | None = None) -> list[dict]:
        """Newest first; ``to`` keeps the messages sent to that address."""
        return self.store.list(to)

    def clear(self) -> int:
        return self.store.clear()

    def __enter__(self) -> MailCatcher:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Capteur de courriels local (SMTP + HTTP).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--smtp-port", type=int, default=8625, help="0 = un port libre")
    parser.add_argument("--http-port", type=int, default=8680, help="0 = un port libre")
    args = parser.parse_args(argv)

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())

    try:
        catcher = MailCatcher(args.host, args.smtp_port, args.http_port).start()
    except OSError as exc:
        print(f"mailcatcher: impossible d'écouter sur {args.host}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"smtp": catcher.smtp_port, "http": catcher.http_port}), flush=True)
    print(
        f"mailcatcher: SMTP {catcher.smtp_url}, messages sur {catcher.http_url}/",
        file=sys.stderr,
        flush=True,
    )
    try:
        while not stop.wait(0.5):
            pass
    finally:
        catcher.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
