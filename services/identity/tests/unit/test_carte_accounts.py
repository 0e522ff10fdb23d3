"""Carte des formations accounts: issued by administrators, signed in with an
identifier, rate-limited, resettable through the contact e-mail, revocable."""

from __future__ import annotations

import datetime as dt

import pytest

from identity import carte
from identity import use_cases as uc
from identity.models import Outbox, Session
from kit.context import Caller
from kit.errors import Conflict, Forbidden, InvalidInput, NotFound, TooManyRequests, Unauthenticated

NOW = dt.datetime(2020, 1, 15, 9, 0, tzinfo=dt.UTC)


def uai(digits: str) -> str:
    from kit.codes import uai_check_letter

    return digits + uai_check_letter(digits)


@pytest.fixture
def admin(session):
    user = uc.ensure_admin(session, "admin@agence.localhost", "correct horse 42")
    return Caller(user_id=user.id, roles=("agency_admin",))


def create(session, admin, **data):
    return carte.create_account(session, admin, data, now=NOW)


def establishment(session, admin, code="0311234"):
    return create(
        session,
        admin,
        kind="establishment",
        identifier=uai(code).lower(),
        label="Lycée des métiers",
        contact_email="Contact@Lycee.example",
    )


def events(session, event_type):
    return [o.payload for o in session.query(Outbox).filter_by(event_type=event_type)]


def test_an_establishment_signs_in_with_its_uai_and_the_issued_password(session, admin):
    created = establishment(session, admin)
    account = created["account"]

    assert account["identifier"] == uai("0311234") and account["uai"] == uai("0311234")
    assert account["contact_email"] == "contact@lycee.example"
    result = carte.authenticate(session, f" {uai('0311234').lower()} ", created["password"], "ip")

    assert result["caller"]["roles"] == ["carte_establishment"]
    assert result["caller"]["org_id"] is None
    assert result["user"]["signed_in_as"] == (
        "Vous êtes connecté en tant qu'établissement de formation avec l'identifiant "
        + uai("0311234")
    )
    assert session.get(Session, result["session_id"]) is not None


def test_the_saved_account_is_announced_with_a_revision(session, admin):
    created = establishment(session, admin)
    carte.update_account(session, admin, created["account"]["user_id"], {"label": "Autre nom"})

    saved = events(session, "carte_account_saved")
    assert [e["revision"] for e in saved] == [1, 2]
    assert saved[-1]["label"] == "Autre nom" and saved[-1]["uai"] == uai("0311234")


def test_a_wrong_password_and_an_unknown_identifier_get_the_same_answer(session, admin):
    establishment(session, admin)
    with pytest.raises(Unauthenticated) as wrong:
        carte.authenticate(session, uai("0311234"), "nope", "ip")
    with pytest.raises(Unauthenticated) as unknown:
        carte.authenticate(session, "INCONNU", "nope", "ip")
    assert wrong.value.code == unknown.value.code == "auth.invalid_credentials"
    assert wrong.value.message == unknown.value.message


def test_sign_in_is_rate_limited_per_identifier(session, admin):
    created = establishment(session, admin)
    for _ in range(uc.MAX_FAILURES_PER_ACCOUNT):
        with pytest.raises(Unauthenticated):
            carte.authenticate(session, uai("0311234"), "wrong", "1.2.3.4", now=NOW)
    with pytest.raises(TooManyRequests) as limited:
        carte.authenticate(session, uai("0311234"), created["password"], "5.6.7.8", now=NOW)
    assert limited.value.details["retry_after"] > 0


def test_the_e_mail_sign_in_cannot_be_used_with_a_carte_account(session, admin):
    created = establishment(session, admin)
    with pytest.raises(Unauthenticated):
        uc.authenticate(session, "carte:" + uai("0311234").lower(), created["password"], "ip")


def test_an_establishment_identifier_must_be_a_valid_uai(session, admin):
    with pytest.raises(InvalidInput) as bad:
        create(
            session,
            admin,
            kind="establishment",
            identifier="0311234A",
            label="Lycée",
            contact_email="a@b.fr",
        )
    assert bad.value.code == "carte.account_invalid"
    assert "identifier" in bad.value.details["fields"]


def test_an_identifier_is_given_once(session, admin):
    establishment(session, admin)
    with pytest.raises(Conflict) as taken:
        establishment(session, admin)
    assert taken.value.code == "carte.identifier_taken"


def test_a_network_lists_valid_member_uais_and_its_referent_is_a_member(session, admin):
    with pytest.raises(InvalidInput) as bad:
        create(
            session,
            admin,
            kind="network",
            identifier="RES-TLS-NORD",
            label="Réseau Toulouse Nord",
            contact_email="reseau@example.org",
            member_uais=[uai("0311234"), "0311234A"],
            referent_uai=uai("0320001"),
        )
    assert set(bad.value.details["fields"]) == {"member_uais", "referent_uai"}

    created = create(
        session,
        admin,
        kind="network",
        identifier="res-tls-nord",
        label="Réseau Toulouse Nord",
        contact_email="reseau@example.org",
        member_uais=[uai("0311234"), uai("0311235"), uai("0311234")],
    )
    account = created["account"]
    assert account["identifier"] == "RES-TLS-NORD"
    assert account["member_uais"] == [uai("0311234"), uai("0311235")]
    assert account["referent_uai"] == uai("0311234")
    with pytest.raises(InvalidInput) as outside:
        carte.update_account(session, admin, account["user_id"], {"referent_uai": uai("0320001")})
    assert "referent_uai" in outside.value.details["fields"]


def test_changing_a_networks_members_closes_its_sessions(session, admin):
    created = create(
        session,
        admin,
        kind="network",
        identifier="RES-1",
        label="Réseau",
        contact_email="reseau@example.org",
        member_uais=[uai("0311234")],
    )
    signed_in = carte.authenticate(session, "RES-1", created["password"], "ip")
    updated = carte.update_account(
        session,
        admin,
        created["account"]["user_id"],
        {"member_uais": [uai("0311234"), uai("0311240")]},
    )

    assert updated["member_uais"] == [uai("0311234"), uai("0311240")]
    assert session.get(Session, signed_in["session_id"]).revoked_at is not None


def test_a_deactivated_account_cannot_sign_in(session, admin):
    created = establishment(session, admin)
    carte.update_account(session, admin, created["account"]["user_id"], {"active": False})
    with pytest.raises(Forbidden) as disabled:
        carte.authenticate(session, uai("0311234"), created["password"], "ip")
    assert disabled.value.code == "auth.account_disabled"


def test_a_reviewer_needs_a_scope(session, admin):
    with pytest.raises(InvalidInput) as bad:
        create(
            session,
            admin,
            kind="reviewer",
            identifier="REG-OCC",
            label="Région",
            contact_email="region@example.org",
        )
    assert "scope" in bad.value.details["fields"]
    created = create(
        session,
        admin,
        kind="reviewer",
        identifier="AC-TLS",
        label="Académie",
        contact_email="ac@example.org",
        scope="toulouse",
    )
    result = carte.authenticate(session, "AC-TLS", created["password"], "ip")
    assert result["caller"]["roles"] == ["carte_reviewer"]
    assert result["user"]["signed_in_as"].startswith("Vous êtes connecté en tant que relecteur")


def test_only_administrators_manage_accounts(session, admin):
    created = establishment(session, admin)
    signed_in = carte.authenticate(session, uai("0311234"), created["password"], "ip")
    as_establishment = Caller(
        user_id=signed_in["caller"]["user_id"], roles=("carte_establishment",)
    )
    with pytest.raises(Forbidden) as refused:
        carte.list_accounts(session, as_establishment)
    assert refused.value.code == "forbidden.carte_admin_only"

    carte_admin = create(
        session,
        admin,
        kind="admin",
        identifier="CARIF-ADMIN",
        label="Carif-Oref",
        contact_email="carif@example.org",
    )
    as_carte_admin = Caller(user_id=carte_admin["account"]["user_id"], roles=("carte_admin",))
    assert len(carte.list_accounts(session, as_carte_admin, kind="establishment")) == 1


def test_an_account_reads_itself_but_not_another(session, admin):
    first = establishment(session, admin, "0311234")
    second = establishment(session, admin, "0311235")
    me = Caller(user_id=first["account"]["user_id"], roles=("carte_establishment",))

    assert carte.get_account(session, me, first["account"]["user_id"])["label"]
    with pytest.raises(Forbidden):
        carte.get_account(session, me, second["account"]["user_id"])
    system = Caller(user_id="carte-service", roles=("system",))
    assert carte.get_account(session, system, second["account"]["user_id"])
    with pytest.raises(NotFound):
        carte.get_account(session, system, "nobody")


def test_a_lost_password_is_reset_through_the_contact_email(session, admin):
    created = establishment(session, admin)

    answer = carte.request_password_reset(session, uai("0311234"))
    unknown = carte.request_password_reset(session, "INCONNU")

    assert answer == unknown
    [event] = events(session, "password_reset_requested")
    assert event["email"] == "contact@lycee.example"
    uc.reset_password(session, event["reset_token"], "nouveau mot 2020", "nouveau mot 2020")
    with pytest.raises(Unauthenticated):
        carte.authenticate(session, uai("0311234"), created["password"], "ip")
    assert carte.authenticate(session, uai("0311234"), "nouveau mot 2020", "ip")["session_id"]


def test_a_regenerated_password_replaces_the_old_one(session, admin):
    created = establishment(session, admin)
    signed_in = carte.authenticate(session, uai("0311234"), created["password"], "ip")
    issued = carte.regenerate_password(session, admin, created["account"]["user_id"])

    assert issued["password"] != created["password"]
    assert session.get(Session, signed_in["session_id"]).revoked_at is not None
    assert carte.authenticate(session, uai("0311234"), issued["password"], "ip")


def test_issued_passwords_are_long_and_mixed():
    password = carte.new_password()
    assert len(password) == 19 and any(c.isdigit() for c in password)


@pytest.mark.parametrize(
    "field, value",
    [
        ("contact_email", 5),
        ("contact_email", ["a@b.fr"]),
        ("contact_email", {"a": "b"}),
        ("label", True),
        ("identifier", None),
        ("identifier", "\u0660\u0663\u0661\u0661\u0661\u0661\u0661P"),  # 0311111P, Arabic digits
    ],
)
def test_a_field_of_the_wrong_type_is_refused_per_field(session, admin, field, value):
    data = dict(
        kind="establishment", identifier=uai("0311111"), label="Lycée", contact_email="a@b.fr"
    )
    with pytest.raises(InvalidInput) as refused:
        create(session, admin, **dict(data, **{field: value}))
    assert refused.value.code == "carte.account_invalid"
    assert list(refused.value.details["fields"]) == [field]


def test_nul_and_control_characters_never_reach_the_database(session, admin):
    """PostgreSQL refuses NUL in text: an identifier holding one is nobody's,
    a name loses it, an odd account id or filter is not found or refused."""
    created = create(
        session,
        admin,
        kind="network",
        identifier="RES-NUL",
        label="Réseau\x00 sectoriel\x07",
        contact_email="reseau@example.org\x00",
        member_uais=[uai("0311111")],
    )
    assert created["account"]["label"] == "Réseau sectoriel"
    assert created["account"]["contact_email"] == "reseau@example.org"
    assert carte.authenticate(session, "RES-\x00NUL", created["password"], "ip")["session_id"]
    with pytest.raises(Unauthenticated):
        carte.authenticate(session, "\x00", "x", "ip")
    assert carte.request_password_reset(session, "\x00") == carte.RESET_SENT
    for call in (
        lambda: carte.get_account(session, admin, "\x00"),
        lambda: carte.update_account(session, admin, "x" * 500, {"label": "x"}),
        lambda: carte.regenerate_password(session, admin, "a\x00b"),
    ):
        with pytest.raises(NotFound):
            call()
    assert [a["identifier"] for a in carte.list_accounts(session, admin, None, "RES\x00")] == [
        "RES-NUL"
    ]
    with pytest.raises(InvalidInput) as kind:
        carte.list_accounts(session, admin, "\x00")
    assert kind.value.code == "carte.filter_invalid"


def test_the_demo_seed_prints_carte_accounts_that_sign_in_and_survive_a_second_run(
    tmp_path, monkeypatch, capsys
):
    """``python -m identity.seed``: the launcher reads its last line, whose
    ``email`` and ``password`` stay as they were; run again (every local
    start), the same accounts get new passwords and no duplicate."""
    import json

    from sqlalchemy.orm import sessionmaker

    from identity import seed
    from identity.models import Base, CarteAccount
    from kit.db import make_engine

    url = f"sqlite:///{tmp_path / 'identity.db'}"
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    monkeypatch.setenv("IDENTITY_DB_URL", url)
    monkeypatch.delenv("DEMO_CARTE_PASSWORD", raising=False)
    printed = []
    for _ in range(2):
        seed.main()
        printed.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    first, second = printed
    assert "@" in second["email"] and second["password"]
    assert [(a["kind"], a["identifier"]) for a in second["carte"]] == [
        ("establishment", seed.LYCEE),
        ("network", "RESEAU-DEMO"),
        ("reviewer", "REGION-DEMO"),
    ]
    old_passwords = {a["password"] for a in first["carte"]}
    assert old_passwords.isdisjoint(a["password"] for a in second["carte"])
    with sessionmaker(engine)() as session:
        assert session.query(CarteAccount).count() == 3
        for account in second["carte"]:
            signed = carte.authenticate(session, account["identifier"], account["password"], "ip")
            assert signed["user"]["kind"] == account["kind"]
        with pytest.raises(Unauthenticated):
            carte.authenticate(session, seed.LYCEE, first["carte"][0]["password"], "ip")
        network = carte.authenticate(session, "RESEAU-DEMO", second["carte"][1]["password"], "ip")
        assert network["user"]["member_uais"] == sorted([seed.LYCEE, seed.OTHER])
        saved = events(session, "carte_account_saved")
        assert [e["revision"] for e in saved if e["identifier"] == "REGION-DEMO"] == [1, 2]
    engine.dispose()
