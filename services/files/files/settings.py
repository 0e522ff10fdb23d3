"""The service's limits, read from the nameko config or the environment once,
when the container starts (never at import time)."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field

from nameko.extensions import DependencyProvider

from files.domain.meta import DEFAULT_MAX_BYTES
from files.use_cases import DEFAULT_SCAN_WAIT_BYTES
from files.xlsx_safety import CONFIG_NAMES, XlsxLimits


@dataclass(frozen=True)
class FilesSettings:
    max_bytes: int = DEFAULT_MAX_BYTES
    xlsx: XlsxLimits = field(default_factory=XlsxLimits)
    # how long a soft-deleted record or an unreferenced blob waits for the sweep
    sweep_grace: dt.timedelta = dt.timedelta(hours=24)
    # documents up to this size wait for their malware verdict before the
    # answer; larger ones may be answered first, quarantined (use_cases)
    scan_wait_bytes: int = DEFAULT_SCAN_WAIT_BYTES


def _positive(config: dict, key: str) -> int | None:
    raw = config.get(key) or os.environ.get(key)
    if raw in (None, ""):
        return None
    value = int(raw)
    if value <= 0:
        raise ValueError(f"{key} must be positive")
    return value


def load(config: dict | None = None) -> FilesSettings:
    """``FILES_MAX_BYTES`` (bytes, default 10 MiB) and the XLSX limits
    (``files.xlsx_safety.CONFIG_NAMES``: ``FILES_XLSX_MAX_BYTES``,
    ``FILES_XLSX_MAX_ENTRIES``, ``FILES_XLSX_MAX_UNCOMPRESSED_BYTES``,
    ``FILES_XLSX_MAX_RATIO``, ``FILES_XLSX_MAX_SHEETS``, ``FILES_XLSX_MAX_ROWS``,
    ``FILES_XLSX_MAX_COLUMNS``, ``FILES_XLSX_MAX_CELL_CHARS``);
    ``FILES_SWEEP_GRACE_HOURS`` (default 24: see ``use_cases.sweep``);
    ``FILES_SCAN_WAIT_BYTES`` (default 256 KiB: see ``use_cases.store_file``;
    set it to ``FILES_MAX_BYTES`` for every upload to wait for its verdict)."""
    config = config or {}
    max_bytes = _positive(config, "FILES_MAX_BYTES") or DEFAULT_MAX_BYTES
    xlsx = {
        name: value
        for name, key in CONFIG_NAMES.items()
        if (value := _positive(config, key)) is not None
    }
    grace = _positive(config, "FILES_SWEEP_GRACE_HOURS") or 24
    wait_bytes = _positive(config, "FILES_SCAN_WAIT_BYTES") or DEFAULT_SCAN_WAIT_BYTES
    return FilesSettings(
        max_bytes=max_bytes,
        xlsx=XlsxLimits(**xlsx),
        sweep_grace=dt.timedelta(hours=grace),
        scan_wait_bytes=wait_bytes,
    )


class Settings(DependencyProvider):
    def setup(self):
        self.settings = load(self.container.config)

    def get_dependency(self, worker_ctx) -> FilesSettings:
        return self.settings
