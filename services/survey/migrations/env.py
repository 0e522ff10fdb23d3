"""Alembic environment of the survey service (own version table, see kit.migrate)."""

from kit.migrate import run_env
from survey.models import Base

run_env(Base.metadata, "survey")
