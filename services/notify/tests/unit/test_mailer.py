"""The SMTP adapter's configuration and the messages it builds (no network)."""

import pytest

from notify.mailer import DEFAULT_MAIL_FROM, Mailer, SendFailed, parse_smtp_url
from notify.templates import Email


@pytest.mark.parametrize(
    "url, expected",
    [
        ("smtp://127.0.0.1:8625", ("127.0.0.1", 8625, "plain", None, None)),
        ("smtp://mail.example.test", ("mail.example.test", 25, "plain", None, None)),
        ("smtps://u:p@mail.example.test", ("mail.example.test", 465, "tls", "u", "p")),
        (
            "smtp+starttls://u%40x:p%3Aw@mail.example.test",
            ("mail.example.test", 587, "starttls", "u@x", "p:w"),
        ),
        ("smtp://user:pass@h:2525", ("h", 2525, "plain", "user", "pass")),
    ],
)
def test_smtp_url_gives_host_port_security_and_credentials(url, expected):
    t = parse_smtp_url(url)
    assert (t.host, t.port, t.security, t.username, t.password) == expected


@pytest.mark.parametrize("url", ["http://h:25", "smtp://", "127.0.0.1:25"])
def test_a_wrong_smtp_url_is_refused_at_startup(url):
    with pytest.raises(ValueError):
        parse_smtp_url(url)


def test_the_password_never_shows_in_the_configuration_repr():
    assert "hunter2" not in repr(parse_smtp_url("smtps://me:hunter2@h"))


def test_message_is_utf8_plain_text_from_the_platform_sender():
    msg = Mailer().build(Email("t", "zoe@example.test", "Réinitialisation", "Lien : é"))
    assert msg["From"] == DEFAULT_MAIL_FROM
    assert msg["To"] == "zoe@example.test"
    assert msg["Subject"] == "Réinitialisation"
    assert msg["Message-ID"].endswith("@localhost>")
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content() == "Lien : é\n"


def test_a_recipient_that_would_inject_headers_is_refused_without_sending():
    mailer = Mailer("smtp://127.0.0.1:9")  # nothing is contacted
    with pytest.raises(SendFailed, match="message invalide"):
        mailer.send(Email("t", "a@example.test\r\nBcc: b@example.test", "S", "T"))
