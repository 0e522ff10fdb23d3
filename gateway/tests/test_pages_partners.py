"""The agency's partner pages (``gateway.pages.partners``) with notify faked:
the list and « Nouveau partenaire » with its per-field refusals, the secrets
shown once, a partner's page (edit, keys, secret, replay, delete) and the
delivery log with its filters and « Renvoyer »."""

from __future__ import annotations

import pytest

from gateway.pages import partners as pages
from kit.errors import Conflict, InvalidInput
from tests.fakes import FakeRpc, page_text, signed_in

KEY = "fpk_abcdefgh_" + "s" * 43
PARTNER = {
    "id": "p1",
    "name": "Région Occitanie",
    "contact_email": "si@laregion.fr",
    "state": "active",
    "event_types": ["survey.response_submitted"],
    "scope": {"account_types": ["OFA"], "academies": ["toulouse"]},
    "webhook": {
        "url": "https://hooks.laregion.fr/formation",
        "state": "enabled",
        "failing_since": None,
        "disabled_reason": None,
    },  # fmt: skip
    "amqp": None,
    "keys": [
        {
            "id": "k1",
            "prefix": "abcdefgh",
            "label": "clé initiale",
            "created_at": "2026-12-01T08:00:00+00:00",
            "last_used_at": None,
            "revoked_at": None,
        },
        {
            "id": "k2",
            "prefix": "zzzzzzzz",
            "label": "ancienne",
            "created_at": "2026-11-01T08:00:00+00:00",
            "last_used_at": None,
            "revoked_at": "2026-11-02T08:00:00+00:00",
        },
    ],  # fmt: skip
    "created_at": "2026-12-01T08:00:00+00:00",
    "updated_at": "2026-12-01T08:00:00+00:00",
}
TYPES = {"items": [
    {"name": "survey.response_submitted", "type": "fr.formation.survey.response_submitted.v1",
     "description_fr": "Une enquête est transmise"},
    {"name": "carte.request_validated", "type": "fr.formation.carte.request_validated.v1",
     "description_fr": "Une demande de la carte est confirmée"},
]}  # fmt: skip
DELIVERY = {
    "id": "d1", "partner_id": "p1", "partner_name": "Région Occitanie", "event_id": "e1",
    "event_type": "survey.response_submitted", "channel": "webhook", "state": "failed",
    "attempts": 7, "next_attempt_at": None, "delivered_at": None,
    "created_at": "2026-12-01T08:00:00+00:00", "last_status": 503, "last_error": "HTTP 503",
}  # fmt: skip


@pytest.fixture
def fake(monkeypatch):
    fake = FakeRpc()
    monkeypatch.setattr(pages, "rpc", fake)
    fake.answers.update(
        {
            "notify.list_partners": {"items": [PARTNER]},
            "notify.get_partner": PARTNER,
            "notify.list_event_types": TYPES,
            "notify.list_partner_audit": {
                "items": [
                    {
                        "at": "2026-12-01T08:00:00+00:00",
                        "actor": "u1",
                        "action": "created",
                        "details": {"name": "Région Occitanie"},
                    }
                ]
            },  # fmt: skip
            "notify.list_deliveries": {
                "items": [DELIVERY],
                "total": 120,
                "page": 1,
                "per_page": 50,
            },  # fmt: skip
            "notify.get_delivery": {
                **DELIVERY,
                "attempts_log": [
                    {
                        "at": "2026-12-01T08:00:05+00:00",
                        "status": 503,
                        "latency_ms": 12,
                        "response_excerpt": "indisponible",
                        "error": None,
                    }
                ],
            },  # fmt: skip
        }
    )
    return fake


@pytest.fixture
def app(make_app):
    return make_app(
        SESSION_SECRET="s" * 32,
        REVOCATION_SOURCE=lambda since: {"now": None, "revoked": []},
    )


def browser(app, roles=("agency_admin",)):
    return signed_in(app, roles)


text = page_text


def test_visitors_go_to_sign_in_and_organisations_are_refused(app, fake):
    visitor = app.test_client().get("/agence/partenaires")
    assert visitor.status_code == 303 and visitor.headers["Location"].endswith("/connexion")
    for path in ("/agence/partenaires", "/agence/partenaires/p1", "/agence/partenaires/livraisons"):
        refused = browser(app, ("manager",)).get(path)
        assert refused.status_code == 403, path
    assert browser(app, ("manager",)).post("/agence/partenaires/p1/supprimer").status_code == 403
    assert fake.calls == []


def test_the_list_shows_each_partner_and_the_creation_form(app, fake):
    response = browser(app).get("/agence/partenaires")
    page = text(response)

    assert response.status_code == 200
    assert 'href="/agence/partenaires/p1"' in page and "Région Occitanie" in page
    assert "https://hooks.laregion.fr/formation (actif)" in page
    assert "types : OFA ; académies : toulouse" in page
    row = [r for r in page.split("</tr>") if "Région Occitanie" in r][0]
    assert row.rstrip().endswith("<td>1</td>")  # one live key, one revoked
    for name in ("name", "contact_email", "event_types", "account_types", "sirets",
                 "academies", "webhook_url", "amqp"):  # fmt: skip
        assert f'name="{name}"' in page
    assert "Une enquête est transmise" in page
    assert 'href="/agence/partenaires">Partenaires</a>' in page
    assert response.headers["Cache-Control"] == "no-store"


def test_creating_sends_the_form_as_the_rpcs_json_and_shows_the_secrets_once(app, fake):
    fake.answers["notify.create_partner"] = {
        "partner": PARTNER, "api_key": KEY, "webhook_secret": "whsec_abc",
        "amqp_credentials": {"uri": "amqp://h:5672/partners", "username": "partner-p1",
                             "password": "pw-123", "vhost": "partners", "queue": "partner.p1"},
    }  # fmt: skip

    response = browser(app).post(
        "/agence/partenaires",
        data={
            "name": "Région Occitanie",
            "contact_email": "si@laregion.fr",
            "event_types": ["survey.response_submitted", "carte.request_validated"],
            "account_types": ["OFA"],
            "sirets": "41816609600051\n\n 40300920200017 ",
            "webhook_url": "https://hooks.laregion.fr/formation",
            "amqp": "1",
        },
    )
    page = text(response)

    assert response.status_code == 201
    sent = fake.calls[0][2][0]
    assert sent["event_types"] == ["survey.response_submitted", "carte.request_validated"]
    assert sent["scope"] == {"account_types": ["OFA"],
                             "sirets": ["41816609600051", "40300920200017"]}  # fmt: skip
    assert sent["amqp"] is True and sent["webhook_url"].startswith("https://")
    assert KEY in page and "whsec_abc" in page and "pw-123" in page
    assert "ne seront plus jamais affichés" in page
    assert response.headers["Cache-Control"] == "no-store"


def test_a_refused_creation_shows_each_message_next_to_its_field_and_keeps_the_values(app, fake):
    fake.answers["notify.create_partner"] = InvalidInput.fields(
        {
            "webhook_url": ["Adresse refusée : 10.0.0.1 n'est pas une adresse publique."],
            "scope.sirets": ["SIRET invalide : 123 (14 chiffres attendus)."],
        },
        "partner.invalid_input",
        "Le partenaire ne peut pas être enregistré.",
    )

    response = browser(app).post(
        "/agence/partenaires",
        data={"name": "Rectorat", "contact_email": "dsi@ac.fr", "sirets": "123",
              "webhook_url": "http://10.0.0.1/hook", "event_types": "carte.request_validated"},
    )  # fmt: skip
    page = text(response)

    assert response.status_code == 422
    assert "Le partenaire ne peut pas être enregistré." in page
    assert 'id="webhook_url-err"' in page and "n'est pas une adresse publique" in page
    assert 'id="scope-sirets-err"' in page and 'aria-describedby="scope-sirets-err"' in page
    assert 'value="Rectorat"' in page and 'value="http://10.0.0.1/hook"' in page
    assert 'value="carte.request_validated" checked' in page


def test_the_partner_page_has_edit_keys_replay_history_and_delete(app, fake):
    response = browser(app).get("/agence/partenaires/p1")
    page = text(response)

    assert response.status_code == 200
    assert "fpk_abcdefgh_…" in page and "révoquée le 02/11/2026" in page
    assert 'action="/agence/partenaires/p1/cles/k1/revoquer"' in page
    assert "/agence/partenaires/p1/cles/k2/revoquer" not in page  # already revoked
    assert 'action="/agence/partenaires/p1/secret"' in page
    assert 'action="/agence/partenaires/p1/rejouer"' in page
    assert 'action="/agence/partenaires/p1/supprimer"' in page
    assert "Création" in page and 'name="state"' in page
    assert 'value="OFA" checked' in page and 'value="toulouse" checked' in page


def test_editing_disables_the_partner_and_redirects(app, fake):
    fake.answers["notify.update_partner"] = PARTNER

    response = browser(app).post(
        "/agence/partenaires/p1",
        data={"name": "Région", "contact_email": "si@laregion.fr", "state": "disabled",
              "event_types": "survey.response_submitted", "webhook_state": "enabled",
              "webhook_url": "https://hooks.laregion.fr/formation"},
    )  # fmt: skip

    assert response.status_code == 303
    assert response.headers["Location"].endswith("/agence/partenaires/p1?fait=modifie")
    assert fake.calls[0][1] == "update_partner"
    assert fake.calls[0][2][1]["state"] == "disabled"
    assert fake.calls[0][2][1]["scope"] == {}  # nothing ticked: no restriction


def test_a_new_key_is_shown_once_and_a_key_is_revoked(app, fake):
    fake.answers["notify.create_partner_key"] = {"key": {"id": "k3"}, "api_key": KEY}
    fake.answers["notify.revoke_partner_key"] = {"id": "k1"}

    made = browser(app).post("/agence/partenaires/p1/cles", data={"label": "rotation 2027"})
    revoked = browser(app).post("/agence/partenaires/p1/cles/k1/revoquer")

    assert made.status_code == 201 and KEY in text(made)
    assert ("notify", "create_partner_key", ("p1", "rotation 2027")) in fake.calls
    assert revoked.status_code == 303 and "fait=cle_revoquee" in revoked.headers["Location"]
    assert ("notify", "revoke_partner_key", ("p1", "k1")) in fake.calls


def test_too_many_keys_is_said_on_the_partner_page(app, fake):
    fake.answers["notify.create_partner_key"] = Conflict(
        "partner.too_many_keys", "Ce partenaire a déjà 5 clés actives : révoquez-en une."
    )

    response = browser(app).post("/agence/partenaires/p1/cles", data={"label": ""})

    assert response.status_code == 409
    assert "déjà 5 clés actives" in text(response)


def test_rotating_the_secret_shows_the_new_one_and_how_long_the_old_one_holds(app, fake):
    fake.answers["notify.rotate_webhook_secret"] = {
        "webhook_secret": "whsec_new", "previous_valid_until": "2026-12-07T08:00:00+00:00"
    }  # fmt: skip

    response = browser(app).post("/agence/partenaires/p1/secret")
    page = text(response)

    assert "whsec_new" in page and "07/12/2026" in page


def test_replay_from_a_date_reports_how_many_were_scheduled(app, fake):
    fake.answers["notify.replay_partner"] = {"scheduled": 42}

    response = browser(app).post("/agence/partenaires/p1/rejouer", data={"since": "2026-11-30"})
    shown = browser(app).get(response.headers["Location"])

    assert response.status_code == 303
    assert ("notify", "replay_partner", ("p1", "2026-11-30")) in fake.calls
    assert "42 livraison(s) programmée(s)." in text(shown)


def test_a_bad_replay_date_is_said_next_to_the_field(app, fake):
    fake.answers["notify.replay_partner"] = InvalidInput.fields(
        {"since": ["Une date ISO 8601 est attendue."]}, "partner.invalid_input"
    )

    response = browser(app).post("/agence/partenaires/p1/rejouer", data={"since": "hier"})

    assert response.status_code == 422
    assert 'id="since-err"' in text(response)


def test_deleting_needs_the_confirmation_box(app, fake):
    fake.answers["notify.delete_partner"] = {"deleted": True}

    unconfirmed = browser(app).post("/agence/partenaires/p1/supprimer")
    confirmed = browser(app).post("/agence/partenaires/p1/supprimer", data={"confirm": "1"})

    assert unconfirmed.status_code == 422
    assert "Cochez la case pour confirmer la suppression." in text(unconfirmed)
    assert confirmed.status_code == 303
    assert confirmed.headers["Location"].endswith("/agence/partenaires?fait=supprime")
    assert [c for c in fake.calls if c[1] == "delete_partner"] == [
        ("notify", "delete_partner", ("p1",))
    ]


def test_the_delivery_log_filters_paginates_and_redelivers(app, fake):
    fake.answers["notify.redeliver"] = DELIVERY

    response = browser(app).get("/agence/partenaires/livraisons?partner_id=p1&state=failed")
    page = text(response)

    assert response.status_code == 200
    assert ("notify", "list_deliveries", ({"partner_id": "p1", "state": "failed"},)) in fake.calls
    assert "120 livraison(s)" in page and "Page 1 sur 3" in page
    assert "En échec" in page and "503 HTTP 503" in page
    assert '<option value="p1" selected>' in page and '<option value="failed" selected>' in page
    assert "page=2" in page
    redelivered = browser(app).post(
        "/agence/partenaires/livraisons/d1/renvoyer",
        data={"back": "/agence/partenaires/livraisons?partner_id=p1&state=failed"},
    )
    assert redelivered.status_code == 303
    assert redelivered.headers["Location"].endswith(
        "/agence/partenaires/livraisons?partner_id=p1&state=failed&fait=renvoyee"
    )
    assert ("notify", "redeliver", ("d1",)) in fake.calls


def test_a_redeliver_never_redirects_outside_the_log(app, fake):
    fake.answers["notify.redeliver"] = DELIVERY

    response = browser(app).post(
        "/agence/partenaires/livraisons/d1/renvoyer", data={"back": "https://evil.example/"}
    )

    assert response.headers["Location"].endswith("/agence/partenaires/livraisons/d1?fait=renvoyee")


def test_a_bad_filter_is_said_on_the_log(app, fake):
    fake.answers["notify.list_deliveries"] = InvalidInput.fields(
        {"state": ["Valeurs possibles : pending, delivered, failed, disabled."]},
        "partner.filter_invalid",
    )

    response = browser(app).get("/agence/partenaires/livraisons?state=perdu")

    assert response.status_code == 422
    assert "Valeurs possibles : pending" in text(response)


def test_a_delivery_shows_each_attempt(app, fake):
    response = browser(app).get("/agence/partenaires/livraisons/d1")
    page = text(response)

    assert response.status_code == 200
    assert "<td>503</td>" in page and "12 ms" in page and "indisponible" in page
