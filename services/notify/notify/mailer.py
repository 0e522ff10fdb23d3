"""The one SMTP adapter: the only module that imports smtplib.

Configured by one URL: ``smtp://host:port`` (plain, the local mail catcher),
``smtp://user:password@host:port`` (login), ``smtp+starttls://…`` (upgrade to
TLS, port 587 by default) and ``smtps://…`` (TLS from the start, port 465).
Every failure of the mail server or the network comes out as ``SendFailed``
with a short message fit for the delivery log (no password in it).
"""

from __future__ import annotations

import smtplib
import ssl
import urllib.parse
from dataclasses import dataclass
from email.errors import MessageError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr

from notify.templates import Email

DEFAULT_SMTP_URL = "smtp://127.0.0.1:8625"
DEFAULT_MAIL_FROM = "Plateforme formations <no-reply@localhost>"
TIMEOUT = 10.0  # seconds; a blocking call (cooperative under eventlet) must end

_SCHEMES = {"smtp": (25, "plain"), "smtp+starttls": (587, "starttls"), "smtps": (465, "tls")}


class SendFailed(Exception):
    """The mail server refused the message or could not be reached."""


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    security: str  # plain | starttls | tls
    username: str | None = None
    password: str | None = None

    def __repr__(self) -> str:  # never print the password
        return f"SmtpTarget({self.security}://{self.host}:{self.port}, user={self.username!r})"


def parse_smtp_url(url: str) -> SmtpTarget:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in _SCHEMES or not parts.hostname:
        raise ValueError("SMTP_URL must look like smtp://host:port, smtps://… or smtp+starttls://…")
    default_port, security = _SCHEMES[parts.scheme]
    unquote = urllib.parse.unquote
    return SmtpTarget(
        host=parts.hostname,
        port=parts.port or default_port,
        security=security,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


class Mailer:
    """``send(email)`` delivers one message or raises ``SendFailed``."""

    def __init__(
        self,
        smtp_url: str = DEFAULT_SMTP_URL,
        sender: str = DEFAULT_MAIL_FROM,
        timeout: float = TIMEOUT,
    ) -> None:
        self.target = parse_smtp_url(smtp_url)
        self.sender = sender
        self.timeout = timeout
        domain = parseaddr(sender)[1].rpartition("@")[2]
        self._msgid_domain = domain or "localhost"

    def build(self, email: Email) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = Address(addr_spec=email.to)
        msg["Subject"] = email.subject
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = make_msgid(domain=self._msgid_domain)
        msg["Auto-Submitted"] = "auto-generated"  # no vacation replies
        msg.set_content(email.text)
        return msg

    def send(self, email: Email) -> None:
        try:
            msg = self.build(email)
        except (ValueError, TypeError, LookupError, MessageError) as exc:  # not an address
            raise SendFailed(f"message invalide : {exc}") from exc
        target = self.target
        try:
            if target.security == "tls":
                conn = smtplib.SMTP_SSL(
                    target.host,
                    target.port,
                    timeout=self.timeout,
                    context=ssl.create_default_context(),
                )
            else:
                conn = smtplib.SMTP(target.host, target.port, timeout=self.timeout)
            with conn:
                if target.security == "starttls":
                    conn.starttls(context=ssl.create_default_context())
                if target.username:
                    conn.login(target.username, target.password or "")
                conn.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = ", ".join(
                f"{code} {resp.decode(errors='replace')}" for code, resp in exc.recipients.values()
            )
            raise SendFailed(f"destinataire refusé : {codes}") from exc
        except smtplib.SMTPResponseException as exc:
            text = (
                exc.smtp_error.decode(errors="replace")
                if isinstance(exc.smtp_error, bytes)
                else str(exc.smtp_error)
            )
            raise SendFailed(f"refus du serveur SMTP : {exc.smtp_code} {text}") from exc
        except UnicodeError as exc:  # smtplib speaks ASCII only in AUTH
            raise SendFailed("identifiants SMTP non ASCII") from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise SendFailed(
                f"serveur SMTP {target.host}:{target.port} injoignable : "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    __call__ = send
