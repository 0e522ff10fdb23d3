"""Configuration comes from the environment, checked when the app is built."""

from __future__ import annotations

import logging

import pytest

from gateway import config, create_app


def test_defaults():
    settings = config.load(env={}, overrides={"TESTING": True})

    assert settings["AMQP_URI"] == "amqp://guest:guest@127.0.0.1:5672/"
    assert settings["RPC_TIMEOUT"] == 5.0
    assert settings["HEALTH_RPC_TIMEOUT"] == 1.0
    assert settings["MAX_CONTENT_LENGTH"] == 12 * 1024 * 1024
    assert settings["MAX_JSON_BYTES"] == 64 * 1024
    assert settings["PUBLIC_URL"] == "http://127.0.0.1:8600"
    assert settings["SERVICES"] == ["identity", "survey", "files", "carte", "notify"]
    assert settings["TRUSTED_PROXIES"] == 0


def test_values_from_the_environment():
    env = {
        "SESSION_SECRET": "s3cret",
        "RPC_TIMEOUT": "2.5",
        "MAX_JSON_BYTES": "1000",
        "SERVICES": "identity, survey ,",
        "PUBLIC_URL": "https://x.example/",
        "TRUSTED_PROXIES": "1",
        "RATELIMIT_ENABLED": "false",
    }

    settings = config.load(env=env)

    assert settings["RPC_TIMEOUT"] == 2.5
    assert settings["MAX_JSON_BYTES"] == 1000
    assert settings["SERVICES"] == ["identity", "survey"]
    assert settings["PUBLIC_URL"] == "https://x.example"
    assert settings["TRUSTED_PROXIES"] == 1
    assert settings["RATELIMIT_ENABLED"] is False
    assert settings["SECRET_KEY"] == settings["SESSION_SECRET"] == "s3cret"


def test_production_requires_a_session_secret():
    with pytest.raises(config.ConfigError, match="SESSION_SECRET"):
        config.load(env={"APP_ENV": "production"})
    with pytest.raises(config.ConfigError, match="SESSION_SECRET"):
        config.load(env={})


@pytest.mark.parametrize("env", [{"APP_ENV": "development"}, {"APP_ENV": "testing"}])
def test_development_gets_a_random_secret_with_a_warning(env, caplog, monkeypatch):
    monkeypatch.setattr(config, "_dev_secret", None)
    with caplog.at_level(logging.WARNING, logger="gateway.config"):
        first = config.load(env=env)["SESSION_SECRET"]
    second = config.load(env=env)["SESSION_SECRET"]

    assert len(first) >= 32
    assert first == second  # one per process
    assert "SESSION_SECRET is not set" in caplog.text


@pytest.mark.parametrize(
    "env",
    [
        {"RPC_TIMEOUT": "soon"},
        {"RPC_TIMEOUT": "0"},
        {"MAX_JSON_BYTES": "-1"},
        {"MAX_JSON_BYTES": str(20 * 1024 * 1024)},
    ],
)
def test_malformed_values_are_refused_with_the_variable_name(env):
    with pytest.raises(config.ConfigError, match=next(iter(env))):
        config.load(env={"APP_ENV": "development", **env})


def test_create_app_reads_the_environment(monkeypatch):
    monkeypatch.setenv("APP_ENV", "development")
    monkeypatch.setenv("SERVICES", "identity")
    monkeypatch.setenv("MAX_JSON_BYTES", "1234")

    app = create_app()

    assert app.config["SERVICES"] == ["identity"]
    assert app.config["MAX_JSON_BYTES"] == 1234


def test_create_app_refuses_production_without_secret(monkeypatch):
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.delenv("SESSION_SECRET", raising=False)

    with pytest.raises(config.ConfigError):
        create_app()


def test_create_app_does_not_connect(make_app):
    app = make_app()  # AMQP_URI points at a closed port

    assert app.test_client().get("/health/live").status_code == 200
