"""Alembic environment of the files service (own version table, see kit.migrate)."""

from files.models import Base
from kit.migrate import run_env

run_env(Base.metadata, "files")
