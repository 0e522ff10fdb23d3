"""``python -m identity.audit_check [--db-url URL]``: verifies the hash chain
of identity's audit trail (kit.audit) and prints the first broken link.
Exit status 0 when intact, 1 otherwise; reads ``IDENTITY_DB_URL``."""

from __future__ import annotations

import sys

from identity.models import AuditChain, AuditEntry
from kit.audit import main

if __name__ == "__main__":
    sys.exit(main("identity", AuditEntry, AuditChain))
