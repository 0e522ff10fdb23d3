"""``python -m notify.audit_check [--db-url URL]``: verifies the hash chain
of notify's partner audit trail (``partner_audit``, kit.audit) and prints the
first broken link. Exit status 0 when intact, 1 otherwise; reads
``NOTIFY_DB_URL``."""

from __future__ import annotations

import sys

from kit.audit import main
from notify.models import PartnerAudit, PartnerAuditChain

if __name__ == "__main__":
    sys.exit(main("notify", PartnerAudit, PartnerAuditChain))
