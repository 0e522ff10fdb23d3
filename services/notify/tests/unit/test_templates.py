"""Each identity event gives the right French e-mail to the right person."""

import pytest

from kit import events
from notify import templates
from notify.templates import PayloadError, Settings, render

SETTINGS = Settings(
    public_url="https://formations.example.test/", agency_email="agence@example.test"
)


def person(**extra):
    return {
        "event_id": "e1",
        "user_id": "u1",
        "org_id": "o1",
        "email": "lea.martin@example.test",
        "first_name": "Léa",
        "last_name": "Martin",
        **extra,
    }


def only(emails):
    assert len(emails) == 1
    return emails[0]


def test_registration_asks_the_user_to_confirm_their_address_and_says_the_agency_validates():
    mail = only(
        render(
            events.USER_REGISTERED,
            person(confirm_token="tok-123", self_registered=True, for_existing_org=False),
            SETTINGS,
        )
    )
    assert mail.to == "lea.martin@example.test"
    assert mail.subject == "Confirmez votre adresse électronique"
    assert "Bonjour Léa Martin," in mail.text
    assert "https://formations.example.test/inscription/confirmer?token=tok-123" in mail.text
    assert "France compétences" in mail.text
    assert "gestionnaire de compte" not in mail.text


def test_registration_for_an_existing_organisation_says_its_account_manager_validates():
    mail = only(
        render(
            events.USER_REGISTERED,
            person(confirm_token="tok", self_registered=True, for_existing_org=True),
            SETTINGS,
        )
    )
    assert "le gestionnaire de compte de votre organisme" in mail.text
    assert "France compétences" not in mail.text


def test_token_is_url_encoded_in_links():
    mail = only(render(events.USER_REGISTERED, person(confirm_token="a b&c=d"), SETTINGS))
    assert "/inscription/confirmer?token=a%20b%26c%3Dd" in mail.text


def test_confirmed_address_tells_each_manager_once_that_a_user_awaits_validation():
    emails = render(
        events.EMAIL_CONFIRMED,
        person(manager_emails=["chef@example.test", "adjoint@example.test", "chef@example.test"]),
        SETTINGS,
    )
    assert [m.to for m in emails] == ["chef@example.test", "adjoint@example.test"]
    for mail in emails:
        assert mail.subject == "Un nouvel utilisateur attend votre validation"
        assert "Léa Martin (lea.martin@example.test)" in mail.text
        assert "« Gestion des utilisateurs »" in mail.text
        assert "https://formations.example.test/connexion" in mail.text
        assert mail.template == "email_confirmed.manager"


def test_confirmed_address_without_manager_goes_to_the_agency_mailbox():
    mail = only(render(events.EMAIL_CONFIRMED, person(manager_emails=[]), SETTINGS))
    assert mail.to == "agence@example.test"
    assert mail.subject == "Une inscription attend votre validation"
    assert "Léa Martin (lea.martin@example.test)" in mail.text
    assert mail.template == "email_confirmed.agency"


def test_agency_mailbox_has_a_local_default():
    mail = only(render(events.EMAIL_CONFIRMED, person(), Settings()))
    assert mail.to == "agence@localhost"
    assert "http://127.0.0.1:8600/connexion" in mail.text


def test_validation_invites_the_user_to_sign_in():
    mail = only(render(events.USER_VALIDATED, person(role="user"), SETTINGS))
    assert mail.to == "lea.martin@example.test"
    assert mail.subject == "Votre compte a été validé"
    assert "https://formations.example.test/connexion" in mail.text
    assert "gestionnaire de compte" not in mail.text


def test_validation_of_a_manager_mentions_the_account_manager_role():
    mail = only(render(events.USER_VALIDATED, person(role="manager"), SETTINGS))
    assert "« gestionnaire de compte »" in mail.text


def test_rejection_gives_the_reason():
    mail = only(
        render(events.USER_REJECTED, person(reason="Pièce justificative illisible."), SETTINGS)
    )
    assert mail.to == "lea.martin@example.test"
    assert "n'a pas été acceptée" in mail.subject
    assert "Pièce justificative illisible." in mail.text


def test_rejection_without_reason_says_so():
    mail = only(render(events.USER_REJECTED, person(reason=""), SETTINGS))
    assert "Aucun motif n'a été précisé." in mail.text


def test_invitation_names_the_organisation_and_links_to_choose_a_password():
    mail = only(
        render(
            events.USER_INVITED, person(invite_token="inv-9", org_name="CFA des Tests"), SETTINGS
        )
    )
    assert mail.to == "lea.martin@example.test"
    assert "CFA des Tests" in mail.text
    assert "choisissez votre mot de passe" in mail.text
    assert "https://formations.example.test/invitation?token=inv-9" in mail.text


def test_password_reset_link_is_valid_one_hour_and_can_be_ignored():
    mail = only(render(events.PASSWORD_RESET_REQUESTED, person(reset_token="rst-7"), SETTINGS))
    assert mail.to == "lea.martin@example.test"
    assert "https://formations.example.test/mot-de-passe/reinitialiser?token=rst-7" in mail.text
    assert "valable 1 heure" in mail.text
    assert "ignorez ce message" in mail.text


def test_greeting_without_a_name_stays_polite():
    mail = only(
        render(
            events.PASSWORD_RESET_REQUESTED,
            {"email": "x@example.test", "reset_token": "t"},
            SETTINGS,
        )
    )
    assert mail.text.startswith("Bonjour,\n")


@pytest.mark.parametrize(
    "event_type, payload",
    [
        (events.USER_REGISTERED, person()),  # no confirm_token
        (events.USER_INVITED, person()),  # no invite_token
        (events.PASSWORD_RESET_REQUESTED, person()),  # no reset_token
        (events.USER_VALIDATED, {"first_name": "Léa"}),  # no email
    ],
)
def test_a_payload_missing_what_the_mail_needs_is_refused(event_type, payload):
    with pytest.raises(PayloadError):
        render(event_type, payload, SETTINGS)


def test_every_event_that_calls_for_an_email_has_a_template():
    assert (
        set(templates.TEMPLATES)
        == set(templates.SOURCES)
        == {
            events.USER_REGISTERED,
            events.EMAIL_CONFIRMED,
            events.USER_VALIDATED,
            events.USER_REJECTED,
            events.USER_INVITED,
            events.PASSWORD_RESET_REQUESTED,
            events.PROGRAMME_REPORTED,
        }
    )


def test_a_missing_programme_is_reported_to_the_carte_administrators():
    [mail] = render(
        events.PROGRAMME_REPORTED,
        {
            "report_id": "r1",
            "title": "CAP Ébéniste en 2 ans",
            "cfd": "50023405",
            "rncp": None,
            "message": "Ouverture prévue",
            "reporter_identifier": "0750654D",
            "reporter_label": "Lycée de l'exemple",
        },
        SETTINGS,
    )
    assert mail.to == SETTINGS.carte_admin_email
    assert "CAP Ébéniste en 2 ans" in mail.text and "0750654D" in mail.text
    assert "Ouverture prévue" in mail.text and "CAP" not in mail.subject


def test_no_text_carries_a_password_even_if_the_payload_had_one():
    leaked = "S3cret-Passw0rd!"
    payload = person(
        password=leaked,
        confirm_token="t",
        invite_token="t",
        reset_token="t",
        reason="r",
        role="manager",
        org_name="O",
        manager_emails=["m@example.test"],
        title="T",
        reporter_identifier="0750654D",
    )
    for event_type in templates.TEMPLATES:
        for mail in render(event_type, payload, SETTINGS):
            assert leaked not in mail.text and leaked not in mail.subject
