"""The gateway's multipart decoder (gateway.multipart) cuts bodies exactly as
Werkzeug's own does, tricky bodies included, without compiling a pattern."""

from __future__ import annotations

import io
import re

import pytest
from werkzeug.sansio import multipart as werkzeug_multipart
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from gateway import multipart

B = b"----WebKitFormBoundary7MA4YWxkTrZu0gW"


def body(parts, *, sep=b"\r\n", preamble=b"", epilogue=b"", space=b"") -> bytes:
    out = preamble
    for headers, content in parts:
        out += b"--" + B + space + sep + headers + sep + sep + content + sep
    return out + b"--" + B + b"--" + space + sep + epilogue


FILE = b'Content-Disposition: form-data; name="file"; filename="a.xlsx"'
FIELD = b'Content-Disposition: form-data; name="key"'
BODIES = {
    "one file": body([(FILE, b"PK\x03\x04" + bytes(range(256)) * 40)]),
    "a field and a file": body([(FIELD, b"abc"), (FILE, b"data")]),
    "boundary-like lines inside the file": body(
        [(FILE, b"x\r\n--" + B[:-1] + b"\r\n--" + B + b"X\r\n--" + B + b"-\r\ny")]
    ),
    "the boundary inside a line, not after a line break": body([(FILE, b"a--" + B + b"\r\nb")]),
    "a preamble and an epilogue": body(
        [(FIELD, b"1")], preamble=b"ignored\r\n", epilogue=b"trailing text"
    ),
    "line feeds only": body([(FIELD, b"1"), (FILE, b"two\nlines")], sep=b"\n"),
    "spaces after the boundaries": body([(FIELD, b"1")], space=b"  \t"),
    "an empty part": body([(FIELD, b"")]),
    "no final boundary": b"--" + B + b"\r\n" + FIELD + b"\r\n\r\nvalue",
    "nothing but the last boundary": b"--" + B + b"--\r\n",
}


def events(decoder_class, data: bytes, chunk: int) -> list:
    decoder = decoder_class(B, max_form_memory_size=None)
    seen = []
    for start in range(0, len(data), chunk):
        decoder.receive_data(data[start : start + chunk])
        seen += _drain(decoder)
    decoder.receive_data(None)
    return seen + _drain(decoder)


def _drain(decoder) -> list:
    seen = []
    while True:
        try:
            event = decoder.next_event()
        except ValueError as exc:
            return seen + [("error", str(exc))]
        if isinstance(event, werkzeug_multipart.NeedData | werkzeug_multipart.Epilogue):
            seen.append(type(event).__name__)
            return seen
        seen.append(
            (type(event).__name__, getattr(event, "data", None), getattr(event, "name", None))
        )


@pytest.mark.parametrize("name", sorted(BODIES))
@pytest.mark.parametrize("chunk", [7, 64, 1 << 20])
def test_both_decoders_give_the_same_events_for_every_body(name, chunk):
    data = BODIES[name]
    expected = events(werkzeug_multipart.MultipartDecoder, data, chunk)
    assert events(multipart.MultipartDecoder, data, chunk) == expected


def test_the_decoder_sets_what_werkzeugs_sets_and_compiles_nothing(monkeypatch):
    theirs = werkzeug_multipart.MultipartDecoder(B, 1000, max_parts=3)

    def refused(*args, **kwargs):
        raise AssertionError("re.compile called")

    monkeypatch.setattr(re, "compile", refused)
    ours = multipart.MultipartDecoder(B, 1000, max_parts=3)
    assert set(vars(ours)) == set(vars(theirs))
    assert {k: v for k, v in vars(ours).items() if not k.endswith("_re")} == {
        k: v for k, v in vars(theirs).items() if not k.endswith("_re")
    }


def test_an_installed_decoder_parses_a_request_form_and_its_file():
    multipart.install()
    data = BODIES["a field and a file"]
    environ = EnvironBuilder(
        method="POST",
        input_stream=io.BytesIO(data),
        content_type=f"multipart/form-data; boundary={B.decode()}",
        content_length=len(data),
    ).get_environ()
    request = Request(environ)
    assert request.form["key"] == "abc"
    assert request.files["file"].read() == b"data"
    assert request.files["file"].filename == "a.xlsx"
