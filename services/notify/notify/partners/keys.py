"""Partner API keys and webhook secrets: random, shown once, keys stored hashed.

An API key reads ``fpk_<prefix>_<secret>``: the prefix finds the row (and is
shown in the pages to tell keys apart), the sha256 of the whole key is what
is stored and compared. A webhook secret is a Standard Webhooks secret
(``whsec_`` + base64 of 24 random bytes).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

KEY_PATTERN = re.compile(r"^fpk_([a-z0-9]{8})_([A-Za-z0-9_-]{32,64})$")


def new_api_key() -> tuple[str, str, str]:
    """``(key, prefix, sha256 hex)``."""
    prefix = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(8))
    key = f"fpk_{prefix}_{secrets.token_urlsafe(32)[:43]}"
    return key, prefix, digest(key)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse(key) -> str | None:
    """The prefix of a well-formed key, else None."""
    if not isinstance(key, str) or len(key) > 120:
        return None
    found = KEY_PATTERN.match(key)
    return found.group(1) if found else None


def same(key: str, stored_hash: str) -> bool:
    return hmac.compare_digest(digest(key), stored_hash)


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
