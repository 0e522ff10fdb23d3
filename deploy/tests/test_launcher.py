"""The launcher's pure parts and process handling, and the compose file's
shape (what lets an operator scale a service), without starting the platform."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import pytest
import yaml

from deploy import launcher
from deploy.launcher import Config, LaunchError, System

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = ("identity", "survey", "files", "carte", "notify")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0): read its state.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _wait_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


# --- ports and URIs ----------------------------------------------------------


def test_a_free_port_can_be_bound():
    port = launcher.free_port()
    assert 1024 <= port <= 65535
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_port_zero_means_pick_one_and_a_given_port_is_kept():
    assert launcher.resolve_port(8600) == 8600
    assert launcher.resolve_port(0) > 0


def test_port_open_tells_a_listening_port_from_a_closed_one():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        assert launcher.port_open("127.0.0.1", port)
    assert not launcher.port_open("127.0.0.1", port)


def test_the_broker_address_and_a_masked_uri_come_from_amqp_uri():
    assert launcher.amqp_address("amqp://u:p@rabbit:5673/vh") == ("rabbit", 5673)
    assert launcher.amqp_address("amqp://guest:guest@127.0.0.1/") == ("127.0.0.1", 5672)
    assert launcher.mask_uri("amqp://u:secret@rabbit:5673/vh") == "amqp://u:***@rabbit:5673/vh"
    assert "secret" not in launcher.mask_uri("amqp://u:secret@rabbit/")


def test_an_unreachable_broker_without_rabbitmq_installed_says_what_to_do(monkeypatch):
    monkeypatch.setattr(launcher.shutil, "which", lambda name: None)
    port = launcher.free_port()
    with pytest.raises(LaunchError) as error:
        launcher.ensure_rabbitmq(
            f"amqp://u:secret@127.0.0.1:{port}/", Path("/nonexistent"), timeout=1
        )
    message = str(error.value)
    assert "Installez" in message and "Install it" in message and "AMQP_URI" in message
    assert "secret" not in message


# --- environments ------------------------------------------------------------


def _config(tmp_path, **kwargs) -> Config:
    return Config(data_dir=tmp_path, amqp_uri="amqp://g:g@127.0.0.1:5672/vh", **kwargs)


def test_every_process_gets_the_platform_settings(tmp_path):
    env = launcher.common_env(
        _config(tmp_path),
        smtp_url="smtp://127.0.0.1:1",
        sirene_url="http://127.0.0.1:2",
        public_url="http://127.0.0.1:3",
        base={"PATH": "/bin", "PYTHONPATH": "/elsewhere"},
    )
    assert env["PATH"] == "/bin"
    assert "PYTHONPATH" not in env
    assert env["AMQP_URI"] == "amqp://g:g@127.0.0.1:5672/vh"
    assert env["DATA_DIR"] == str(tmp_path)
    assert env["FILES_DIR"] == str(tmp_path / "files")
    assert env["SMTP_URL"] == "smtp://127.0.0.1:1"
    assert env["SIRENE_URL"] == "http://127.0.0.1:2"
    assert env["PUBLIC_URL"] == "http://127.0.0.1:3"
    assert env["PSYCOPG_WAIT_FUNC"] == "wait_select"
    assert env["AGENCY_EMAIL"]


def test_explicit_overrides_win_over_computed_settings(tmp_path):
    config = _config(
        tmp_path, env={"IDENTITY_DB_URL": "postgresql://db/identity", "SMTP_URL": "smtp://relay:25"}
    )
    env = launcher.common_env(
        config,
        smtp_url="smtp://127.0.0.1:1",
        sirene_url="x",
        public_url="y",
        base={"IDENTITY_DB_URL": "sqlite:///old"},
    )
    assert env["IDENTITY_DB_URL"] == "postgresql://db/identity"
    assert env["SMTP_URL"] == "smtp://relay:25"


def test_a_service_sees_the_kit_and_its_own_package_only(tmp_path):
    env = launcher.service_env({"A": "1"}, "survey", root=tmp_path)
    assert env["PYTHONPATH"].split(os.pathsep) == [
        str(tmp_path / "libs" / "kit"),
        str(tmp_path / "services" / "survey"),
    ]
    assert env["A"] == "1"


def test_the_gateway_gets_its_bind_address_secret_and_worker_count(tmp_path):
    config = _config(tmp_path, web_concurrency=3)
    env = launcher.gateway_env(
        {"A": "1"},
        config,
        port=8123,
        session_secret="s3",
        services=["identity", "files"],
        root=tmp_path,
    )
    assert env["GATEWAY_BIND"] == "127.0.0.1:8123"
    assert env["SERVICES"] == "identity,files"  # what readiness waits for
    assert env["SESSION_SECRET"] == "s3"
    assert env["WEB_CONCURRENCY"] == "3"
    assert env["PYTHONPATH"].split(os.pathsep) == [
        str(tmp_path / "gateway"),
        str(tmp_path / "libs" / "kit"),
    ]


def test_the_local_run_defaults_to_the_documented_ports(tmp_path):
    config = Config.from_env({"DATA_DIR": str(tmp_path)})
    assert (config.gateway_port, config.smtp_port, config.mail_http_port, config.sirene_port) == (
        8600,
        8625,
        8680,
        8690,
    )
    assert config.amqp_uri == launcher.DEFAULT_AMQP_URI
    assert config.data_dir == tmp_path
    assert Config.from_env({"GATEWAY_PORT": "9000"}).gateway_port == 9000
    with pytest.raises(LaunchError, match="GATEWAY_PORT"):
        Config.from_env({"GATEWAY_PORT": "eighty"})


def test_a_local_session_secret_survives_a_restart_and_is_private(tmp_path):
    first = System(_config(tmp_path))._session_secret()
    assert len(first) >= 32
    assert System(_config(tmp_path))._session_secret() == first
    assert (tmp_path / "session_secret").stat().st_mode & 0o077 == 0
    assert System(_config(tmp_path, session_secret="given"))._session_secret() == "given"


# --- readiness answers -------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        {"status": "ok", "services": {"identity": "ok", "files": "down"}},
        {"services": {"identity": {"status": "ok"}, "files": {"status": "error"}}},
        {"checks": [{"service": "identity", "status": "ok"}, {"service": "files", "ok": False}]},
    ],
)
def test_service_states_reads_the_usual_readiness_shapes(payload):
    states = launcher.service_states(payload, ["identity", "files", "notify"])
    assert states == {"identity": True, "files": False, "notify": None}


def test_a_helper_announces_its_ports_on_a_json_line(tmp_path):
    log = tmp_path / "h.log"
    log.write_text('warning: something\n{"smtp": 1, "http": 2}\nlistening\n')
    assert launcher.first_json_line(log, ("smtp", "http")) == {"smtp": 1, "http": 2}
    assert launcher.first_json_line(log, ("port",)) is None
    assert launcher.first_json_line(tmp_path / "missing.log", ("port",)) is None


# --- processes ---------------------------------------------------------------


def test_stop_ends_a_child_and_can_be_called_again(tmp_path):
    system = System(_config(tmp_path))
    child = system.spawn("sleeper", ["sleep", "60"])
    assert _alive(child.popen.pid)
    system.stop()
    assert _wait_gone(child.popen.pid)
    system.stop()  # idempotent
    assert system.processes == []
    with pytest.raises(LaunchError):
        system.spawn("late", ["sleep", "60"])


def test_stop_before_start_does_nothing(tmp_path):
    System(_config(tmp_path)).stop()


def test_stop_kills_a_child_that_ignores_sigterm_after_the_grace_period(tmp_path):
    system = System(_config(tmp_path, stop_grace=0.5))
    child = system.spawn("stubborn", ["bash", "-c", "trap '' TERM INT; sleep 60 & wait"])
    time.sleep(0.3)  # let bash install its trap
    started = time.monotonic()
    system.stop()
    assert time.monotonic() - started < 6
    assert _wait_gone(child.popen.pid)


def test_stop_reaches_grandchildren_through_the_process_group(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    system = System(_config(tmp_path, stop_grace=2))
    system.spawn("parent", ["bash", "-c", f"sleep 60 & echo $! > {pid_file}; wait"])
    deadline = time.monotonic() + 5
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    grandchild = int(pid_file.read_text())
    system.stop()
    assert _wait_gone(grandchild)


def test_replicas_come_from_the_config_or_replicas_in_the_environment(tmp_path):
    assert launcher.parse_replicas("survey=3, notify=2") == {"survey": 3, "notify": 2}
    assert launcher.parse_replicas("") == {}
    for bad in ("survey", "survey=0", "survey=x", "nobody=2"):
        with pytest.raises(LaunchError):
            launcher.parse_replicas(bad)
    config = Config.from_env({"DATA_DIR": str(tmp_path), "REPLICAS": "survey=3"})
    assert config.replica_count("survey") == 3 and config.replica_count("notify") == 1
    assert launcher.replica_names("survey", 3) == ["survey.1", "survey.2", "survey.3"]
    assert launcher.replica_names("notify", 1) == ["notify"]


def test_services_run_under_kit_runner_with_the_shared_config():
    argv = launcher.service_argv("py", "survey")
    assert argv == ["py", "-m", "kit.runner", "--config", "deploy/nameko.yaml", "survey.service"]


def test_replicas_are_killed_terminated_and_restarted_one_by_one(tmp_path):
    system = System(_config(tmp_path, stop_grace=5))
    try:
        script = "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(7))"
        for name in ("survey.1", "survey.2", "survey.3"):
            system.spawn(name, [sys.executable, "-c", script + "\ntime.sleep(60)"])
        time.sleep(0.5)  # the handlers are installed
        assert system.replicas("survey") == ["survey.1", "survey.2", "survey.3"]

        code, took = system.terminate("survey.2")
        assert code == 7 and took < 5
        assert system.replicas("survey") == ["survey.1", "survey.3"]

        system.kill("survey")  # a service's name: its last running replica
        assert system.replicas("survey") == ["survey.1"]

        system.restart("survey.3")
        assert system.replicas("survey") == ["survey.1", "survey.3"]
        assert (tmp_path / "logs" / "survey.3-2.log").is_file()
    finally:
        system.stop()
    assert system.processes == []


def test_a_process_that_dies_is_reported_with_the_end_of_its_log(tmp_path):
    system = System(_config(tmp_path))
    try:
        child = system.spawn(
            "fragile", [sys.executable, "-c", "print('cannot bind port 1234'); raise SystemExit(3)"]
        )
        child.popen.wait(timeout=10)
        with pytest.raises(LaunchError) as error:
            system.check_alive()
        assert "fragile exited with code 3" in str(error.value)
        assert "cannot bind port 1234" in str(error.value)
        assert (tmp_path / "logs" / "fragile.log").is_file()
    finally:
        system.stop()


def test_start_fails_fast_and_clearly_without_a_broker(tmp_path):
    port = launcher.free_port()
    system = System(Config(data_dir=tmp_path, amqp_uri=f"amqp://g:g@127.0.0.1:{port}/"))
    with pytest.raises(LaunchError, match="RabbitMQ is not reachable"):
        system.start()
    assert system.processes == []


# --- docker compose ----------------------------------------------------------


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_runs_every_service_the_gateway_and_real_infrastructure(compose):
    services = compose["services"]
    for name in (*APP_SERVICES, "gateway", "rabbitmq", "postgres", "mailpit", "sirene"):
        assert name in services, name
    assert services["rabbitmq"]["image"].startswith("rabbitmq:3-management")
    assert services["postgres"]["image"].startswith("postgres:15")
    assert services["mailpit"]["image"].startswith("axllent/mailpit")


def test_compose_services_can_be_scaled(compose):
    """A container_name or a host port would make --scale fail."""
    for name, service in compose["services"].items():
        assert "container_name" not in service, name
    for name in APP_SERVICES:
        service = compose["services"][name]
        assert "ports" not in service, name
        assert service["build"]["args"]["SERVICE"] == name
        assert f"{name.upper()}_DB_URL" in service["environment"], name
    assert any("8600" in str(p) for p in compose["services"]["gateway"]["ports"])


def test_compose_waits_for_healthy_infrastructure(compose):
    for name in (*APP_SERVICES, "gateway"):
        depends = compose["services"][name]["depends_on"]
        assert depends["rabbitmq"]["condition"] == "service_healthy", name
    for name in ("rabbitmq", "postgres", "gateway", *APP_SERVICES):
        assert "healthcheck" in compose["services"][name], name


def test_compose_has_no_default_for_secrets(compose):
    gateway_env = compose["services"]["gateway"]["environment"]
    assert gateway_env["SESSION_SECRET"].startswith("${SESSION_SECRET:?")


def test_postgres_init_creates_one_database_per_service():
    sql = (ROOT / "deploy" / "postgres-init.sql").read_text().lower()
    for name in APP_SERVICES:
        assert f"create database {name}" in sql, name
