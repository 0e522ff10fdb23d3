"""Passwords (argon2id) and single-use tokens.

Hashing costs ~20 ms of CPU: it runs in eventlet's thread pool so that the
hub (and the AMQP heartbeat) keeps running.
"""

from __future__ import annotations

import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from kit.cpu import offload

# docs/architecture.md §4: argon2id, at least t=2, m=19 MiB
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# verified against when the account does not exist, to keep timings alike
_DUMMY_HASH = _hasher.hash("not-a-real-password-" + secrets.token_hex(8))


def hash_password(password: str) -> str:
    return offload(_hasher.hash, password)


def verify_password(password_hash: str | None, password: str) -> bool:
    def check() -> bool:
        try:
            return (
                _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
            )
        except (VerificationError, InvalidHashError):
            return False

    return offload(check)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
