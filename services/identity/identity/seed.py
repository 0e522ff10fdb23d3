"""Demo data: creates or resets the agency administrator account.

``python -m identity.seed`` prints ``{"email": ..., "password": ...}`` as its
last line. The password comes from ``DEMO_ADMIN_PASSWORD`` or is generated.
"""

from __future__ import annotations

import json
import os
import secrets

from sqlalchemy.orm import sessionmaker

from identity.use_cases import ensure_admin
from kit.db import database_url, make_engine


def main() -> None:
    email = os.environ.get("DEMO_ADMIN_EMAIL", "admin@agence.localhost")
    password = os.environ.get("DEMO_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
    engine = make_engine(database_url("identity"))
    with sessionmaker(engine)() as session:
        ensure_admin(session, email, password)
    engine.dispose()
    print(json.dumps({"email": email, "password": password}))


if __name__ == "__main__":
    main()
