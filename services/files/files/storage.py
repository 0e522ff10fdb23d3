"""Where the bytes live, behind a four-method interface.

Blobs are addressed by their sha256, so a backend never needs names, owners or
kinds: those are metadata in the database. ``LocalDiskStorage`` is the embedded
default; an S3 backend will implement the same ``BlobStorage`` protocol.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import Protocol

from nameko.extensions import DependencyProvider

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class BlobMissing(LookupError):
    """The storage has no bytes for this sha256."""


class BlobStorage(Protocol):
    def put(self, sha256: str, data: bytes) -> None:
        """Stores ``data`` under ``sha256``; a no-op when already present."""

    def get(self, sha256: str) -> bytes:
        """The bytes, or ``BlobMissing``."""

    def exists(self, sha256: str) -> bool: ...

    def delete(self, sha256: str) -> None:
        """Removes the bytes; a no-op when absent."""


def _checked(sha256: str) -> str:
    # the key becomes a path: anything but lower-case hex is refused
    if not isinstance(sha256, str) or not _SHA256.match(sha256):
        raise ValueError("sha256 must be 64 lower-case hex digits")
    return sha256


class LocalDiskStorage:
    """Blobs as files ``<root>/ab/cd/<sha256>``, written atomically.

    A temporary file in the target folder is written, flushed to disk, then
    renamed over the final name: a reader never sees half a blob, and two
    writers of the same content both end with the same complete file.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        sha256 = _checked(sha256)
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, sha256: str, data: bytes) -> None:
        target = self.path(sha256)
        if target.exists():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def get(self, sha256: str) -> bytes:
        try:
            return self.path(sha256).read_bytes()
        except FileNotFoundError:
            raise BlobMissing(sha256) from None

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def delete(self, sha256: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(sha256).unlink()


def files_dir(config: dict | None = None) -> Path:
    """``FILES_DIR`` from the nameko config or the environment, else
    ``<DATA_DIR or data>/files``."""
    configured = (config or {}).get("FILES_DIR") or os.environ.get("FILES_DIR")
    if configured:
        return Path(configured)
    return Path(os.environ.get("DATA_DIR", "data")) / "files"


class Storage(DependencyProvider):
    """Gives workers the service's blob storage (built in ``setup``)."""

    def __init__(self):
        self.storage: BlobStorage | None = None

    def setup(self):
        root = files_dir(self.container.config)
        root.mkdir(parents=True, exist_ok=True)
        self.storage = LocalDiskStorage(root)

    def get_dependency(self, worker_ctx) -> BlobStorage:
        return self.storage
