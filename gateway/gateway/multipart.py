"""Multipart bodies parsed without compiling two regular expressions per request.

Werkzeug's ``MultipartDecoder`` (3.1) compiles a preamble and a boundary
pattern for each body, around that body's boundary. Every client draws a
new boundary per request, so Python's pattern cache never helps: the two
compilations were about a third of the gateway's CPU per transmission
(py-spy, deadline spike of ``bench/scale_bench.py``). ``BoundaryPattern``
finds the same matches with ``bytes.find`` on ``--<boundary>`` and one
precompiled pattern for what may follow it; ``install()`` makes Werkzeug's
form parser use a decoder built with it. Everything else (parts, limits,
errors) is Werkzeug's own. ``gateway/tests/test_multipart.py`` checks that
both decoders cut the same bodies into the same events.
"""

from __future__ import annotations

import re

import werkzeug.formparser
from werkzeug.sansio import multipart

# what follows ``--<boundary>`` (as in Werkzeug's patterns): ``--`` for the
# last one, horizontal whitespace, then a line break
_AFTER = re.compile(rb"(--[^\S\n\r]*(?:\r\n|\n|\r)?|[^\S\n\r]*(?:\r\n|\n|\r))")


class _Match:
    __slots__ = ("_start", "_end", "_tail")

    def __init__(self, start: int, end: int, tail: bytes):
        self._start, self._end, self._tail = start, end, tail

    def start(self) -> int:
        return self._start

    def end(self) -> int:
        return self._end

    def group(self, index: int = 0) -> bytes:
        if index != 1:
            raise IndexError("only group 1 (what follows the boundary) is kept")
        return self._tail


class BoundaryPattern:
    """``(LINE_BREAK)?--<boundary>(tail)`` (line break required unless
    ``prefix_optional``), searched like a compiled pattern's ``search``."""

    def __init__(self, boundary: bytes, *, prefix_optional: bool):
        self.needle = b"--" + boundary
        self.prefix_optional = prefix_optional

    def search(self, data, pos: int = 0) -> _Match | None:
        needle = self.needle
        while True:
            found = data.find(needle, pos)
            if found < 0:
                return None
            if found >= 2 and data[found - 2 : found] == b"\r\n":
                start = found - 2
            elif found >= 1 and data[found - 1 : found] in (b"\n", b"\r"):
                start = found - 1
            elif self.prefix_optional:
                start = found
            else:
                pos = found + 1
                continue
            after = _AFTER.match(data, found + len(needle))
            if after is None:
                pos = found + 1
                continue
            return _Match(start, after.end(), after.group(1))


class MultipartDecoder(multipart.MultipartDecoder):
    """Werkzeug's decoder with ``BoundaryPattern`` in place of its two
    per-boundary patterns (its ``__init__`` but the two compilations)."""

    def __init__(
        self,
        boundary: bytes,
        max_form_memory_size: int | None = None,
        *,
        max_parts: int | None = None,
    ) -> None:
        self.buffer = bytearray()
        self.complete = False
        self.max_form_memory_size = max_form_memory_size
        self.max_parts = max_parts
        self.state = multipart.State.PREAMBLE
        self.boundary = boundary
        self.preamble_re = BoundaryPattern(boundary, prefix_optional=True)
        self.boundary_re = BoundaryPattern(boundary, prefix_optional=False)
        self._search_position = 0
        self._parts_decoded = 0


def install() -> None:
    """Werkzeug's form parser builds this decoder from now on (idempotent)."""
    werkzeug.formparser.MultipartDecoder = MultipartDecoder
