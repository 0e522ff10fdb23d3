"""Fixtures for identity's tests: an in-memory database and a fake registry."""

import pytest
from sqlalchemy.orm import sessionmaker

from identity.models import Base
from identity.sirene import Establishment, RegistryUnavailable
from kit.db import make_engine


class FakeSirene:
    """Answers like identity.sirene.SireneClient, from a dict."""

    def __init__(self, known=None, down=False):
        self.known = (
            known
            if known is not None
            else {
                "41816609600051": Establishment(
                    "41816609600051", "CFA DE L'EXEMPLE", "1 RUE DE L'EXEMPLE 75001 PARIS", True
                ),
                "73282932000074": Establishment(
                    "73282932000074", "OG DES METIERS", "2 AVENUE DES METIERS 69001 LYON", True
                ),
                "35600000018723": Establishment(
                    "35600000018723", "CFA FERME", "3 RUE FERMEE 13001 MARSEILLE", False
                ),
            }
        )
        self.down = down

    def lookup(self, siret):
        if self.down:
            raise RegistryUnavailable("down")
        return self.known.get(siret)


@pytest.fixture
def session():
    engine = make_engine("sqlite://")
    Base.metadata.create_all(engine)
    with sessionmaker(engine, expire_on_commit=False)() as s:
        yield s
    engine.dispose()


@pytest.fixture
def sirene():
    return FakeSirene()
