"""TOTP secrets encrypted at rest (issue 11): whoever reads identity's
database or a backup of it must not be able to compute users' codes.

A secret is stored as a Fernet token (AES-128-CBC with HMAC-SHA256, from
``cryptography``) of ``<user id>:<base32 secret>``: the user id binds it to its
row, so a token copied onto another account's row opens nowhere.

Keys come from ``TOTP_ENCRYPTION_KEYS``: comma-separated Fernet keys
(``python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"``).
The first encrypts, every one decrypts: to rotate, put a new key first and
keep the old ones until every secret has been used once (a secret read with
an older key, or stored in clear before encryption, is sealed again with the
first key when it is next used).

Without the variable, with ``APP_ENV`` set to anything but development or
test (production, staging…), nothing is derived: the keys are required and
every TOTP operation is refused (a logged error, a French 503), and the
service refuses to start once ``TotpKeys`` is one of its dependencies. In
development and tests (``APP_ENV`` development, test or unset: the
launcher sets development, the unit tests nothing) a local key is used and
a WARNING says so: ``DATA_DIR/identity_totp_key``, made once (mode 0600)
so that replicas and restarts agree, or a key of the process alone when
``DATA_DIR`` is unset.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from nameko.extensions import DependencyProvider

log = logging.getLogger(__name__)

ENV = "TOTP_ENCRYPTION_KEYS"
RELAXED_ENVS = {"", "development", "dev", "testing", "test"}
LOCAL_KEY_FILE = "identity_totp_key"
# what pyotp.random_base32() gives, as stored before encryption; a Fernet
# token starts with "gAAAAA" and never matches
_CLEAR = re.compile(r"^[A-Z2-7]{16,64}=*$")


class ConfigError(RuntimeError):
    """The keys are missing (outside development) or malformed."""


class Unreadable(Exception):
    """A stored secret that no configured key opens (or bound to another user)."""


class SecretBox:
    """Seals and opens TOTP secrets with the configured keys."""

    def __init__(self, keys: Sequence[bytes | str], source: str = ENV) -> None:
        if not keys:
            raise ConfigError(f"{ENV}: at least one key is needed")
        fernets = [Fernet(key) for key in keys]
        self._primary = fernets[0]
        self._all = MultiFernet(fernets)
        self.source = source

    def seal(self, secret: str, user_id: str) -> str:
        return self._primary.encrypt(f"{user_id}:{secret}".encode()).decode("ascii")

    def open(self, stored: str, user_id: str) -> tuple[str, bool]:
        """``(secret, stale)``; ``stale`` when it was stored in clear or under
        an older key: the caller seals it again. Raises Unreadable."""
        if is_clear(stored):
            return stored, True
        stale = False
        try:
            token = stored.encode("ascii")
        except (AttributeError, UnicodeEncodeError):
            raise Unreadable("not a Fernet token") from None
        try:
            plain = self._primary.decrypt(token)
        except InvalidToken:
            stale = True
            try:
                plain = self._all.decrypt(token)
            except InvalidToken:
                raise Unreadable(f"no key of {self.source} opens it") from None
        owner, _, secret = plain.decode("ascii", "replace").partition(":")
        if owner != user_id or not is_clear(secret):
            raise Unreadable("sealed for another account")
        return secret, stale


def is_clear(stored: str) -> bool:
    """A base32 secret as stored before encryption."""
    return isinstance(stored, str) and _CLEAR.match(stored) is not None


def _keys(raw: str) -> list[str]:
    keys = [part.strip() for part in raw.split(",") if part.strip()]
    for number, key in enumerate(keys, 1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            # the key itself is never printed
            raise ConfigError(
                f"{ENV}: key {number} of {len(keys)} is not a Fernet key (44 characters "
                "of URL-safe base64, as Fernet.generate_key() gives)"
            ) from None
    return keys


def _local_key(data_dir: Path) -> bytes:
    """Made once: written aside then linked into place, so that a replica
    starting at the same time reads a whole key or makes none."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCAL_KEY_FILE
    if not path.exists():
        aside = data_dir / f".{LOCAL_KEY_FILE}.{os.getpid()}.{threading.get_ident()}"
        fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(Fernet.generate_key())
        try:
            os.link(aside, path)
        except FileExistsError:
            pass  # another process was first: its key wins
        finally:
            aside.unlink()
    return path.read_bytes().strip()


def load(environ: Mapping[str, str] | None = None) -> SecretBox:
    """The box the environment configures (see the module's docstring)."""
    environ = os.environ if environ is None else environ
    keys = _keys(environ.get(ENV, ""))
    if keys:
        return SecretBox(keys, source=ENV)
    app_env = (environ.get("APP_ENV") or "").strip().lower()
    if app_env not in RELAXED_ENVS:
        raise ConfigError(
            f"{ENV} is required with APP_ENV={app_env} (comma-separated Fernet keys, "
            "the first one encrypts): TOTP secrets are never stored in clear"
        )
    data_dir = environ.get("DATA_DIR")
    if data_dir:
        path = Path(data_dir) / LOCAL_KEY_FILE
        key, where = _local_key(Path(data_dir)), str(path)
    else:
        key, where = Fernet.generate_key(), "a key of this process: lost at restart"
    log.warning(
        "%s is not set: TOTP secrets are encrypted with a local development key (%s); "
        "set it outside development",
        ENV,
        where,
    )
    return SecretBox([key], source=f"the local development key ({where})")


_current: SecretBox | None = None
_lock = threading.Lock()


def current() -> SecretBox:
    """The box in use: the one ``configure`` set, else loaded once from the
    environment. Raises ConfigError (not cached: fixing the setting is enough)."""
    global _current
    with _lock:
        if _current is None:
            _current = load()
        return _current


def configure(box: SecretBox | None) -> None:
    """Sets the box in use (None: load it again from the environment)."""
    global _current
    with _lock:
        _current = box


class TotpKeys(DependencyProvider):
    """Loads the keys when the service starts: a missing or malformed key
    stops it there, and the development fallback's WARNING is in its log."""

    def setup(self) -> None:
        self.box = load()
        configure(self.box)

    def get_dependency(self, worker_ctx) -> SecretBox:
        return self.box
