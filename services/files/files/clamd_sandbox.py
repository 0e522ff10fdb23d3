"""A throw-away clamd for tests and benchmarks, with a signature database
written here (no internet, so no freshclam): one body signature matching the
EICAR test string anywhere in a file.

    with clamd_sandbox.running() as clamd:   # a temp dir, clamd in the foreground
        ClamdScanner(clamd.address).scan(b"...")

Everything lives in a temporary folder (database, clamd.conf, socket, log);
the process is stopped by its pid and the folder removed on the way out.
Not imported by the service.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from files.corpus import EICAR

CLAMD_PATHS = ("/usr/sbin/clamd", "/usr/bin/clamd", "/usr/local/sbin/clamd")
SIGNATURE_NAME = "Platform.Test.EICAR"


def binary() -> str | None:
    found = shutil.which("clamd")
    return found or next((p for p in CLAMD_PATHS if os.access(p, os.X_OK)), None)


def available() -> bool:
    return binary() is not None


@dataclass
class Clamd:
    pid: int
    address: str
    folder: Path


def _config(folder: Path) -> str:
    return "\n".join(
        [
            f"LocalSocket {folder / 'clamd.sock'}",
            "Foreground yes",
            f"DatabaseDirectory {folder / 'db'}",
            f"TemporaryDirectory {folder / 'tmp'}",
            f"LogFile {folder / 'clamd.log'}",
            f"PidFile {folder / 'clamd.pid'}",
            "StreamMaxLength 20M",
            "MaxThreads 4",
            "Bytecode no",
            "",
        ]
    )


@contextlib.contextmanager
def running(timeout: float = 60.0) -> Iterator[Clamd]:
    """A clamd answering PING on a unix socket in a temporary folder."""
    from files.scanner import ClamdScanner

    clamd = binary()
    if clamd is None:
        raise RuntimeError("clamd is not installed (Debian: apt-get install clamav-daemon)")
    folder = Path(tempfile.mkdtemp(prefix="clamd-"))
    (folder / "db").mkdir()
    (folder / "tmp").mkdir()
    # name:target type (0: any file):offset (*: anywhere):hex body
    (folder / "db" / "platform.ndb").write_text(f"{SIGNATURE_NAME}:0:*:{EICAR.hex()}\n")
    (folder / "clamd.conf").write_text(_config(folder))
    process = subprocess.Popen(
        [clamd, "-c", str(folder / "clamd.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    address = f"unix://{folder / 'clamd.sock'}"
    try:
        scanner = ClamdScanner(address, timeout=5)
        deadline = time.monotonic() + timeout
        while not scanner.ping():
            if process.poll() is not None or time.monotonic() > deadline:
                log = (folder / "clamd.log").read_text() if (folder / "clamd.log").exists() else ""
                raise RuntimeError(f"clamd did not start: {log[-2000:]}")
            time.sleep(0.2)
        yield Clamd(pid=process.pid, address=address, folder=folder)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
        shutil.rmtree(folder, ignore_errors=True)
