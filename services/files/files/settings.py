"""The service's limits, read from the nameko config or the environment once,
when the container starts (never at import time)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from nameko.extensions import DependencyProvider

from files.domain.meta import DEFAULT_MAX_BYTES


@dataclass(frozen=True)
class FilesSettings:
    max_bytes: int = DEFAULT_MAX_BYTES


def load(config: dict | None = None) -> FilesSettings:
    """``FILES_MAX_BYTES`` (bytes, default 10 MiB)."""
    raw = (config or {}).get("FILES_MAX_BYTES") or os.environ.get("FILES_MAX_BYTES")
    if raw in (None, ""):
        return FilesSettings()
    value = int(raw)
    if value <= 0:
        raise ValueError("FILES_MAX_BYTES must be positive")
    return FilesSettings(max_bytes=value)


class Settings(DependencyProvider):
    def setup(self):
        self.settings = load(self.container.config)

    def get_dependency(self, worker_ctx) -> FilesSettings:
        return self.settings
