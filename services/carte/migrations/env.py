"""Alembic environment of the carte service."""

from carte.models import Base
from kit.migrate import run_env

run_env(Base.metadata, "carte")
