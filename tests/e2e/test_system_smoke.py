"""The system starts as `bash deploy/run.sh` starts it, and answers."""

from __future__ import annotations

from deploy.launcher import service_states


def test_the_gateway_is_alive(gateway):
    assert gateway.get("/health/live").status_code == 200


def test_every_started_service_is_ready(gateway, system):
    response = gateway.get("/health/ready")
    assert response.status_code == 200, response.text
    states = service_states(response.json(), system.started_services)
    assert states == {name: True for name in system.started_services}, response.text


def test_the_core_services_were_started(system):
    """survey and carte join this list once they have a service.py."""
    assert "identity" in system.started_services
    assert not {"identity", "files", "notify", "survey"} & set(system.skipped)


def test_the_api_describes_itself(gateway):
    response = gateway.get("/api/v1/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    assert spec.get("openapi", "").startswith("3.")
    assert spec.get("paths")


def test_the_admin_account_was_seeded(admin):
    assert "@" in admin["email"] and admin["password"]


def test_the_carte_service_was_started_and_answers(system, gateway):
    assert "carte" in system.started_services and "carte" not in system.skipped
    response = gateway.get("/api/v1/carte/requests")
    assert response.status_code == 401  # the route exists, and asks who is calling


def test_readiness_says_whether_uploads_are_scanned(gateway, e2e_clamd):
    body = gateway.get("/health/ready").json()
    assert body["scanner"] == ("ok" if e2e_clamd is not None else "disabled"), body
