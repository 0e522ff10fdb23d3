"""Fixtures of survey's tests: an in-memory database and the fake files
service (tests/support.py)."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import sessionmaker

from kit.db import make_engine
from services.survey.tests.support import FakeFiles
from survey.models import Base


@pytest.fixture
def session():
    engine = make_engine("sqlite://")
    Base.metadata.create_all(engine)
    with sessionmaker(engine, expire_on_commit=False)() as s:
        yield s
    engine.dispose()


@pytest.fixture
def files():
    return FakeFiles()
