"""Alembic environment of the identity service."""

from identity.models import Base
from kit.migrate import run_env

run_env(Base.metadata, "identity")
