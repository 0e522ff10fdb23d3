"""Module-level functions the process pool test runs in its workers (they
must be importable there, by name)."""

from __future__ import annotations

import os
import time


def burn(seconds: float) -> int:
    """Pure-Python work holding the GIL for ``seconds``; returns the worker's pid."""
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
    return os.getpid()


def refuse(code: str) -> None:
    from kit.errors import InvalidInput

    raise InvalidInput(code, "Refusé.", {"cell": "A1"})


def die() -> None:
    os._exit(3)
