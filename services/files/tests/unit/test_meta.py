"""Upload rules: kinds, safe names, plain MIME types, bounded base64 content."""

from __future__ import annotations

import base64

import pytest

from files.domain.meta import (
    DEFAULT_MAX_BYTES,
    NAME_MAX,
    Rejected,
    check_meta,
    decode_content,
    normalise_content_type,
    sanitise_name,
)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("rapport.xlsx", "rapport.xlsx"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\moi\\Bilan 2024.pdf", "Bilan 2024.pdf"),
        ("a\x00b\x1fc\u202e.pdf", "abc.pdf"),
        ("  Kbis\tsigné \n.pdf ", "Kbis signé .pdf"),
        ("...hidden", "hidden"),
        ("..", ""),
        ("dossier/", ""),
    ],
)
def test_a_name_is_reduced_to_a_safe_base_name(raw, expected):
    assert sanitise_name(raw) == expected


def test_a_long_name_is_cut_to_200_characters_keeping_its_extension():
    name = sanitise_name("x" * 500 + ".xlsx")
    assert len(name) == NAME_MAX
    assert name.endswith("x.xlsx")


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("application/pdf", "application/pdf"),
        (
            "Application/VND.openxmlformats-officedocument.spreadsheetml.sheet",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ),
        ("text/html; charset=utf-8", None),
        ("text/html\r\nX-Injected: 1", None),
        ("pdf", None),
        ("/pdf", None),
    ],
)
def test_only_plain_mime_types_are_accepted(raw, expected):
    assert normalise_content_type(raw) == expected


def test_meta_defaults_the_content_type_and_keeps_the_owner():
    meta = check_meta({"kind": "annex", "name": "a.pdf", "owner_org_id": "org-a"})
    assert meta.content_type == "application/octet-stream"
    assert meta.owner_org_id == "org-a"


@pytest.mark.parametrize(
    "meta, code",
    [
        ("not a dict", "files.invalid_meta"),
        ({"kind": "passport", "name": "a.pdf"}, "files.invalid_kind"),
        ({"kind": "annex", "name": "../"}, "files.invalid_name"),
        ({"kind": "annex", "name": 12}, "files.invalid_name"),
        (
            {"kind": "annex", "name": "a.pdf", "content_type": "text/plain; x=1"},
            "files.invalid_content_type",
        ),
        ({"kind": "annex", "name": "a.pdf", "owner_org_id": ""}, "files.invalid_owner"),
    ],
)
def test_invalid_meta_is_rejected_with_its_code(meta, code):
    with pytest.raises(Rejected) as caught:
        check_meta(meta)
    assert caught.value.code == code


def test_content_at_the_cap_is_accepted():
    assert decode_content(base64.b64encode(b"x" * 100).decode(), 100) == b"x" * 100


@pytest.mark.parametrize(
    "content, code",
    [
        (base64.b64encode(b"x" * 101).decode(), "files.too_large"),
        ("A" * 10_000, "files.too_large"),
        ("", "files.empty"),
        ("not base64!", "files.invalid_encoding"),
        ("QUJ", "files.invalid_encoding"),
        (None, "files.invalid_encoding"),
    ],
)
def test_bad_content_is_rejected_with_its_code(content, code):
    with pytest.raises(Rejected) as caught:
        decode_content(content, 100)
    assert caught.value.code == code


def test_the_default_cap_is_10_mib_and_its_message_says_so():
    ten_mib = 10 * 1024 * 1024
    assert DEFAULT_MAX_BYTES == ten_mib
    assert len(decode_content(base64.b64encode(b"x" * ten_mib).decode(), ten_mib)) == ten_mib
    with pytest.raises(Rejected) as caught:
        decode_content(base64.b64encode(b"x" * (ten_mib + 1)).decode(), ten_mib)
    assert caught.value.code == "files.too_large"
    assert caught.value.message == "Le fichier dépasse la taille maximale de 10 Mo."
