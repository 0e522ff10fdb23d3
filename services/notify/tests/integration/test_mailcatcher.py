"""The mail catcher as developers run it, and the SMTP adapter against it.

These tests need no broker or database: only local processes and sockets.
"""

import importlib.util
import json
import signal
import smtplib
import socket
import subprocess
import sys
import uuid
from email.message import EmailMessage

import pytest
import requests

from notify.mailer import Mailer, SendFailed
from notify.templates import Email

from ..conftest import CATCHER_SCRIPT, start_catcher, stop_catcher


def address():
    return f"{uuid.uuid4().hex[:10]}@example.test"


def send_raw(catcher, to, subject="Objet", text="Corps"):
    msg = EmailMessage()
    msg["From"] = "Expéditeur <exp@example.test>"
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content(text)
    with smtplib.SMTP(catcher.host, catcher.smtp_port, timeout=5) as smtp:
        smtp.send_message(msg)


def test_messages_sent_over_smtp_are_listed_newest_first_with_decoded_text(mailcatcher):
    first, second = address(), address()
    send_raw(mailcatcher, first, "Premier", "Élan\nhttp://x.test/?token=a")
    send_raw(mailcatcher, second, "Deuxième", "Suite")
    messages = mailcatcher.messages()
    assert [m["subject"] for m in messages] == ["Deuxième", "Premier"]
    older = messages[1]
    assert older["to"] == [first]
    assert older["from"] == "Expéditeur <exp@example.test>"
    assert older["text"] == "Élan\nhttp://x.test/?token=a\n"
    assert set(older) >= {"id", "from", "to", "subject", "date", "text"}


def test_messages_can_be_filtered_by_recipient_and_read_one_by_one(mailcatcher):
    mine, other = address(), address()
    send_raw(mailcatcher, mine, "Pour moi")
    send_raw(mailcatcher, other, "Pour un autre")
    [message] = mailcatcher.messages(to=mine.upper())
    assert message["subject"] == "Pour moi"
    one = requests.get(f"{mailcatcher.http_url}/api/messages/{message['id']}", timeout=5)
    assert one.status_code == 200 and one.json() == message
    missing = requests.get(f"{mailcatcher.http_url}/api/messages/999999", timeout=5)
    assert missing.status_code == 404


def test_delete_forgets_every_message(mailcatcher):
    send_raw(mailcatcher, address())
    response = requests.delete(f"{mailcatcher.http_url}/api/messages", timeout=5)
    assert response.json() == {"deleted": 1}
    assert mailcatcher.messages() == []


def test_the_french_page_lists_messages_escaped_with_a_link_to_each(mailcatcher):
    to = address()
    send_raw(mailcatcher, to, "<script>alert(1)</script>", "voir https://site.test/a?b=1")
    [message] = mailcatcher.messages()
    page = requests.get(mailcatcher.http_url + "/", timeout=5)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert 'lang="fr"' in page.text and "Courriels reçus (1)" in page.text
    assert to in page.text
    assert "<script>alert" not in page.text and "&lt;script&gt;" in page.text
    assert f'href="/messages/{message["id"]}"' in page.text
    detail = requests.get(f"{mailcatcher.http_url}/messages/{message['id']}", timeout=5)
    assert '<a href="https://site.test/a?b=1">' in detail.text


def test_an_empty_catcher_says_so_in_french(mailcatcher):
    assert "Aucun message reçu" in requests.get(mailcatcher.http_url, timeout=5).text


def test_only_the_last_thousand_messages_are_kept():
    spec = importlib.util.spec_from_file_location("mailcatcher", CATCHER_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    store = module.MailStore()
    for i in range(1005):
        store.add("a@x.test", ["b@x.test"], f"Subject: n{i}\r\n\r\nx".encode())
    messages = store.list()
    assert len(messages) == 1000
    assert messages[0]["subject"] == "n1004" and messages[-1]["subject"] == "n5"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_the_script_stops_cleanly_on_a_signal_and_frees_its_ports(signum):
    catcher = start_catcher()
    catcher.process.send_signal(signum)
    assert catcher.process.wait(timeout=10) == 0
    catcher.process.stdout.close()
    for port in (catcher.smtp_port, catcher.http_port):
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_the_script_reports_a_busy_port_and_exits_with_an_error():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, str(CATCHER_SCRIPT), "--smtp-port", str(port), "--http-port", "0"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    assert result.returncode == 1
    assert "impossible d'écouter" in result.stderr


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed once the block ends: nothing listens


def test_the_script_listens_on_the_ports_given_and_prints_them_as_json_first():
    smtp, http = free_port(), free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            str(CATCHER_SCRIPT),
            "--smtp-port",
            str(smtp),
            "--http-port",
            str(http),
            "--host",
            "127.0.0.1",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert json.loads(process.stdout.readline()) == {"smtp": smtp, "http": http}
        assert requests.get(f"http://127.0.0.1:{http}/api/messages", timeout=5).json() == []
    finally:
        assert stop_catcher(process) == 0


def test_the_mailer_delivers_to_the_catcher_with_login(mailcatcher):
    to = address()
    user_url = f"smtp://robot:s%3Acret@{mailcatcher.host}:{mailcatcher.smtp_port}"
    Mailer(user_url, "Plateforme formations <no-reply@example.test>").send(
        Email("t", to, "Confirmez votre adresse électronique", "Lien : http://x.test/?token=1")
    )
    [message] = mailcatcher.messages(to=to)
    assert message["subject"] == "Confirmez votre adresse électronique"
    assert message["from"] == "Plateforme formations <no-reply@example.test>"
    assert message["text"] == "Lien : http://x.test/?token=1\n"


def test_the_mailer_reports_an_unreachable_server_as_a_send_failure():
    with pytest.raises(SendFailed, match="injoignable"):
        Mailer(f"smtp://127.0.0.1:{free_port()}", timeout=2).send(
            Email("t", "a@example.test", "S", "T")
        )
