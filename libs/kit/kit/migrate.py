"""Alembic, one history per service (own version table, batch mode for SQLite).

``upgrade(service)`` is what the run command, the containers and the tests
call; a service's ``migrations/env.py`` is one call to ``run_env``.
"""

from __future__ import annotations

from pathlib import Path

from kit.db import database_url, make_engine

ROOT = Path(__file__).resolve().parents[3]


def _config(service: str, url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(ROOT / "services" / service / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["service"] = service
    return cfg


def upgrade(service: str, url: str | None = None) -> None:
    from alembic import command

    command.upgrade(_config(service, url or database_url(service)), "head")


def revision(service: str, message: str, url: str) -> None:
    """Developer tool: autogenerate a revision against an up-to-date database."""
    from alembic import command

    command.revision(_config(service, url), message=message, autogenerate=True)


def run_env(metadata, service: str) -> None:
    """Body of every ``migrations/env.py``."""
    from alembic import context

    url = context.config.get_main_option("sqlalchemy.url")
    engine = make_engine(url)
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            # replicas started together (--scale) migrate one at a time; the
            # lock is released when the connection closes
            from sqlalchemy import text

            connection.execute(
                text("SELECT pg_advisory_lock(hashtext(:key))"), {"key": f"alembic_{service}"}
            )
            connection.commit()
        context.configure(
            connection=connection,
            target_metadata=metadata,
            version_table=f"alembic_version_{service}",
            render_as_batch=True,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if __name__ == "__main__":  # python -m kit.migrate <service> [<service>...]
    import sys

    for name in sys.argv[1:]:
        upgrade(name)
