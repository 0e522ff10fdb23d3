"""Where the bytes live, behind a four-method interface.

Blobs are addressed by their sha256, so a backend never needs names, owners or
kinds: those are metadata in the database. ``LocalDiskStorage`` is the embedded
default; ``S3Storage`` keeps them in an S3-compatible bucket (AWS, MinIO,
Scaleway, OVH…). ``FILES_STORAGE`` chooses (``local`` or ``s3``); see
``build_storage`` for the other settings.
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


class S3Storage:
    """Blobs as objects ``ab/cd/<sha256>`` of one bucket.

    ``client`` is a boto3 S3 client (thread-safe, and cooperative under
    eventlet's monkey-patched sockets). Putting content that is already there
    is skipped: the key is the hash of the bytes, so the object can only be the
    same.
    """

    def __init__(self, client, bucket: str):
        self.client = client
        self.bucket = bucket

    def key(self, sha256: str) -> str:
        sha256 = _checked(sha256)
        return f"{sha256[:2]}/{sha256[2:4]}/{sha256}"

    def put(self, sha256: str, data: bytes) -> None:
        if not isinstance(data, bytes | bytearray):
            raise TypeError("data must be bytes")
        if self.exists(sha256):
            return
        self.client.put_object(
            Bucket=self.bucket,
            Key=self.key(sha256),
            Body=bytes(data),
            ContentType="application/octet-stream",
        )

    def get(self, sha256: str) -> bytes:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.key(sha256))
        except Exception as exc:
            if _s3_missing(exc):
                raise BlobMissing(sha256) from None
            raise
        with contextlib.closing(response["Body"]) as body:
            return body.read()

    def exists(self, sha256: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.key(sha256))
        except Exception as exc:
            if _s3_missing(exc):
                return False
            raise
        return True

    def delete(self, sha256: str) -> None:
        # S3 answers a delete of a missing key with success
        self.client.delete_object(Bucket=self.bucket, Key=self.key(sha256))


def _s3_missing(exc: Exception) -> bool:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return False
    return str(response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound")


def _setting(config: dict | None, key: str) -> str | None:
    value = (config or {}).get(key) or os.environ.get(key)
    return str(value) if value not in (None, "") else None


def s3_client(config: dict | None = None):
    """A boto3 S3 client from ``S3_ENDPOINT_URL`` (S3-compatible servers; path-style
    addressing then), ``S3_REGION``, ``AWS_ACCESS_KEY_ID`` and
    ``AWS_SECRET_ACCESS_KEY`` (nameko config or environment; without them boto3
    looks for credentials as usual: environment, profile, instance role)."""
    import boto3
    from botocore.config import Config

    endpoint = _setting(config, "S3_ENDPOINT_URL")
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=_setting(config, "S3_REGION"),
        aws_access_key_id=_setting(config, "AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=_setting(config, "AWS_SECRET_ACCESS_KEY"),
        config=Config(
            connect_timeout=5,
            read_timeout=30,
            retries={"max_attempts": 3, "mode": "standard"},
            s3={"addressing_style": "path" if endpoint else "auto"},
            # checksums only where S3 requires them: several S3-compatible
            # servers refuse the CRC headers recent boto3 sends by default
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


def build_storage(config: dict | None = None) -> BlobStorage:
    """The backend ``FILES_STORAGE`` names: ``local`` (default; folder
    ``files_dir``) or ``s3`` (bucket ``S3_BUCKET``, client ``s3_client``)."""
    backend = (_setting(config, "FILES_STORAGE") or "local").lower()
    if backend == "local":
        root = files_dir(config)
        root.mkdir(parents=True, exist_ok=True)
        return LocalDiskStorage(root)
    if backend == "s3":
        bucket = _setting(config, "S3_BUCKET")
        if not bucket:
            raise ValueError("FILES_STORAGE=s3 needs S3_BUCKET")
        client = s3_client(config)
        # fail at start, not at the first upload, when the bucket is unreachable
        client.head_bucket(Bucket=bucket)
        return S3Storage(client, bucket)
    raise ValueError(f"FILES_STORAGE must be 'local' or 's3', not {backend!r}")


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
        self.storage = build_storage(self.container.config)

    def get_dependency(self, worker_ctx) -> BlobStorage:
        return self.storage
