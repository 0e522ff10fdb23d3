"""Malware scanning behind a two-method interface, with a ClamAV adapter.

Every upload slot goes through ``Scanner.scan`` before anything is stored
(``files.policy``). ``ClamdScanner`` speaks clamd's INSTREAM command over a
unix socket or TCP; it is about forty lines, written here rather than taken
from the ``clamd`` package (last released in 2014, unmaintained, no
timeouts) or ``pyclamd`` (a 2010s single-file module that opens a new socket
per call and has no typed "unreachable" outcome): we need one command, a
timeout and a clear difference between "infected" and "could not scan",
which the protocol gives in one line. Sockets come from the standard
library, so under eventlet (the service) they are cooperative.

Configuration: ``FILES_CLAMD`` = ``unix:///run/clamav/clamd.ctl``, a bare
socket path, or ``tcp://host:3310``; ``FILES_CLAMD_TIMEOUT`` (seconds,
default 30). Not configured = no scanning, said once at start with a
WARNING and in ``files.health`` (the gateway's ``/health/ready``).
Configured but unreachable = ``ScannerUnavailable``: the upload is refused
with a 503 and ``Retry-After`` (fail closed), never stored unscanned.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import urllib.parse
from dataclasses import dataclass
from typing import Protocol

from nameko.extensions import DependencyProvider

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
DEFAULT_TIMEOUT = 30.0


class ScannerUnavailable(RuntimeError):
    """The scanner is configured but did not give a verdict."""


@dataclass(frozen=True)
class ScanResult:
    infected: bool
    signature: str | None = None


CLEAN = ScanResult(False)


class Scanner(Protocol):
    enabled: bool

    def scan(self, data: bytes) -> ScanResult:
        """The verdict on ``data``, or ``ScannerUnavailable``."""


class NoScanner:
    """Scanning disabled (``FILES_CLAMD`` unset): everything is clean."""

    enabled = False
    address = None

    def scan(self, data: bytes) -> ScanResult:
        return CLEAN


class ClamdScanner:
    """clamd's INSTREAM: ``zINSTREAM\\0``, chunks (4-byte big-endian length +
    bytes), a zero length; the answer is ``stream: OK`` or
    ``stream: <signature> FOUND`` (anything else: no verdict)."""

    enabled = True

    def __init__(self, address: str, timeout: float = DEFAULT_TIMEOUT):
        self.address = address
        self.timeout = timeout
        parsed = urllib.parse.urlsplit(address)
        if parsed.scheme == "tcp":
            self._family, self._target = socket.AF_INET, (parsed.hostname, parsed.port or 3310)
        elif parsed.scheme in ("unix", ""):
            self._family, self._target = socket.AF_UNIX, parsed.path or address
        else:
            raise ValueError(f"FILES_CLAMD must be unix://path or tcp://host:port, not {address!r}")

    def _command(self, payload: bytes | None) -> bytes:
        try:
            with socket.socket(self._family, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(self._target)
                if payload is None:
                    sock.sendall(b"zPING\0")
                else:
                    sock.sendall(b"zINSTREAM\0")
                    view = memoryview(payload)
                    for start in range(0, len(view), CHUNK):
                        chunk = view[start : start + CHUNK]
                        sock.sendall(struct.pack(">L", len(chunk)) + chunk)
                    sock.sendall(struct.pack(">L", 0))
                answer = b""
                while not answer.endswith(b"\0") and (part := sock.recv(4096)):
                    answer += part
        except OSError as exc:
            raise ScannerUnavailable(f"clamd at {self.address}: {exc}") from None
        return answer.rstrip(b"\0").strip()

    def ping(self) -> bool:
        try:
            return self._command(None) == b"PONG"
        except ScannerUnavailable:
            return False

    def scan(self, data: bytes) -> ScanResult:
        answer = self._command(bytes(data)).decode("utf-8", "replace")
        if answer.endswith(" FOUND"):
            signature = answer.removeprefix("stream:").removesuffix(" FOUND").strip()
            return ScanResult(True, signature)
        if answer == "stream: OK":
            return CLEAN
        # "INSTREAM size limit exceeded. ERROR", a broken pipe, an empty answer
        raise ScannerUnavailable(f"clamd at {self.address} gave no verdict: {answer[:200]!r}")


def build_scanner(config: dict | None = None) -> Scanner:
    """``FILES_CLAMD`` (nameko config or environment) → a ClamdScanner, else NoScanner."""
    config = config or {}
    address = config.get("FILES_CLAMD") or os.environ.get("FILES_CLAMD")
    if not address:
        log.warning(
            "FILES_CLAMD is not set: uploads are NOT scanned for malware "
            "(set it to clamd's socket, e.g. unix:///run/clamav/clamd.ctl)"
        )
        return NoScanner()
    raw_timeout = config.get("FILES_CLAMD_TIMEOUT") or os.environ.get("FILES_CLAMD_TIMEOUT")
    scanner = ClamdScanner(str(address), float(raw_timeout or DEFAULT_TIMEOUT))
    if not scanner.ping():
        # fail closed on each upload (503), but say it now too
        log.warning("clamd at %s does not answer: uploads will get 503 until it does", address)
    return scanner


class ScannerProvider(DependencyProvider):
    """Gives workers the service's scanner (built, and announced, in ``setup``)."""

    def setup(self):
        self.scanner = build_scanner(self.container.config)

    def get_dependency(self, worker_ctx) -> Scanner:
        return self.scanner
