"""The unit tests' database and blob storage: SQLite in memory (the files
tables created from the models) and a folder of the test's own."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import sessionmaker

from files.models import Base
from files.storage import LocalDiskStorage
from kit.db import make_engine


@pytest.fixture
def session():
    engine = make_engine("sqlite://")
    Base.metadata.create_all(engine)
    session = sessionmaker(engine, expire_on_commit=False, info={"service": "files"})()
    yield session
    session.close()
    engine.dispose()


@pytest.fixture
def storage(tmp_path):
    return LocalDiskStorage(tmp_path / "files")
