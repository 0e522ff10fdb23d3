"""Starts the whole platform as local processes, for people and for tests.

One code path serves the developer's ``bash deploy/run.sh`` and the
end-to-end tests: both need the same processes (the nameko services, the
gateway, a mail catcher and a SIRENE stand-in), started in the same order,
with migrations first, a bounded wait for readiness, and a stop that leaves
nothing behind. Only the standard library and ``requests`` are used, so the
test process (monkey-patched by eventlet) can import it.

Library use::

    system = System(Config(data_dir=tmp, amqp_uri=uri, env={"IDENTITY_DB_URL": ...}))
    system.start()          # raises LaunchError with the failing log's tail
    system.gateway_url, system.mail_api_url, system.admin
    system.stop()           # idempotent; also run at interpreter exit

Replicas: ``Config(replicas={"survey": 3, "notify": 2})`` (``REPLICAS=survey=3,notify=2``
for ``run.sh``) starts each replica as its own process, named ``survey.1``,
``survey.2``, ... with its own log (``logs/survey.1.log``); a service with one
replica keeps its plain name. ``System.kill``/``restart``/``terminate`` take a
replica's name (or a service's: then its last running replica).

Services run under ``python -m kit.runner`` (a bounded, draining stop on
SIGTERM: ``SHUTDOWN_GRACE_SECONDS``, see libs/kit/kit/runner.py).

Command line: ``python deploy/launcher.py run`` (see ``main``).
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("identity", "survey", "files", "carte", "notify")
DEFAULT_AMQP_URI = "amqp://guest:guest@127.0.0.1:5672/"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", ""}
OK_STATES = {"ok", "up", "ready", "pass", True}


class LaunchError(RuntimeError):
    """Something did not start; the message says what and shows its log."""


# --- small pure helpers ------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def resolve_port(port: int, host: str = "127.0.0.1") -> int:
    """``0`` means "any free port"."""
    return port or free_port(host)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def amqp_uris(uri: str) -> list[str]:
    """The nodes of an ``AMQP_URI``: one URI, or a cluster's nodes ``;``-separated
    (kombu's failover list, read the same way by nameko and the gateway)."""
    return [part.strip() for part in uri.split(";") if part.strip()] or [uri]


def amqp_address(uri: str) -> tuple[str, int]:
    """(host, port) of the first node of ``uri``."""
    parts = urllib.parse.urlsplit(amqp_uris(uri)[0])
    default = 5671 if parts.scheme == "amqps" else 5672
    return parts.hostname or "127.0.0.1", parts.port or default


def reachable_amqp_address(uri: str, timeout: float = 2.0) -> tuple[str, int] | None:
    """(host, port) of the first node of ``uri`` that accepts a connection, else None."""
    for one in amqp_uris(uri):
        host, port = amqp_address(one)
        if port_open(host, port, timeout=timeout):
            return host, port
    return None


def mask_uri(uri: str) -> str:
    """The URI (or each URI of a ``;``-separated list) without its password."""
    if ";" in uri:
        return ";".join(mask_uri(one) for one in amqp_uris(uri))
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = f"{parts.username}:***@{parts.hostname}"
    if parts.port:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    tail = text.splitlines()[-lines:]
    return "\n".join(tail) if tail else "(empty log)"


def first_json_line(path: Path, keys: Iterable[str]) -> dict | None:
    """The first line of a log that is a JSON object holding ``keys``: how a
    helper started on port 0 says where it listens."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and all(k in data for k in keys):
            return data
    return None


def service_states(payload, names: Iterable[str]) -> dict[str, bool | None]:
    """Reads a readiness answer: for each service name, True (ok), False
    (reported but not ok) or None (not mentioned). Accepts the shapes
    ``{"identity": "ok"}``, ``{"identity": {"status": "ok"}}`` and
    ``[{"service": "identity", "status": "ok"}]`` at any depth."""
    found: dict[str, bool] = {}
    names = list(names)

    def judge(value) -> bool:
        if isinstance(value, dict):
            for key in ("status", "state", "ok", "ready"):
                if key in value:
                    return judge(value[key])
            return False
        if isinstance(value, str):
            return value.lower() in OK_STATES
        return value is True

    def walk(node) -> None:
        if isinstance(node, dict):
            label = node.get("service", node.get("name"))
            if isinstance(label, str) and label in names and label not in found:
                found[label] = judge(node)
            for key, value in node.items():
                if key in names and key not in found:
                    found[key] = judge(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(payload)
    return {name: found.get(name) for name in names}


def service_available(name: str, root: Path = ROOT) -> bool:
    return (root / "services" / name / name / "service.py").is_file()


def has_migrations(name: str, root: Path = ROOT) -> bool:
    return (root / "services" / name / "migrations" / "env.py").is_file()


# --- configuration and environments -----------------------------------------


@dataclass
class Config:
    """What differs between a developer's run and a test run. Ports of 0
    mean "pick a free one"; ``env`` overrides everything else given to the
    processes (per-service ``<NAME>_DB_URL``, ...)."""

    data_dir: Path
    amqp_uri: str = DEFAULT_AMQP_URI
    host: str = "127.0.0.1"
    gateway_port: int = 0
    smtp_port: int = 0
    mail_http_port: int = 0
    sirene_port: int = 0
    smtp_url: str | None = None  # an external SMTP server: no mail catcher then
    sirene_url: str | None = None  # an external registry: no stand-in then
    # clamd's socket for the files service's malware scan (FILES_CLAMD:
    # unix:///path or tcp://host:port); None: uploads are not scanned
    clamd: str | None = None
    public_url: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    services: tuple[str, ...] = SERVICES
    app_env: str = "development"
    web_concurrency: int = 2
    session_secret: str | None = None
    agency_email: str = "agence@example.org"
    seed: bool = True
    ready_timeout: float = 120.0
    stop_grace: float = 10.0
    replicas: dict[str, int] = field(default_factory=dict)  # service -> processes (1)
    python: str = sys.executable
    root: Path = ROOT

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Config:
        """The local run's configuration (``python deploy/launcher.py run``)."""

        def number(key: str, default: int) -> int:
            value = environ.get(key, "").strip()
            try:
                return int(value) if value else default
            except ValueError:
                raise LaunchError(f"{key} must be a number, got {value!r}") from None

        return cls(
            data_dir=Path(environ.get("DATA_DIR") or "data").resolve(),
            amqp_uri=environ.get("AMQP_URI") or DEFAULT_AMQP_URI,
            host=environ.get("GATEWAY_HOST") or "127.0.0.1",
            gateway_port=number("GATEWAY_PORT", 8600),
            smtp_port=number("SMTP_PORT", 8625),
            mail_http_port=number("MAIL_HTTP_PORT", 8680),
            sirene_port=number("SIRENE_PORT", 8690),
            smtp_url=environ.get("SMTP_URL") or None,
            sirene_url=environ.get("SIRENE_URL") or None,
            clamd=environ.get("FILES_CLAMD") or None,
            public_url=environ.get("PUBLIC_URL") or None,
            app_env=environ.get("APP_ENV") or "development",
            web_concurrency=number("WEB_CONCURRENCY", 2),
            session_secret=environ.get("SESSION_SECRET") or None,
            agency_email=environ.get("AGENCY_EMAIL") or "agence@example.org",
            ready_timeout=float(number("READY_TIMEOUT", 120)),
            replicas=parse_replicas(environ.get("REPLICAS", "")),
            stop_grace=float(number("STOP_GRACE", 40)),
        )

    def replica_count(self, name: str) -> int:
        return max(1, int(self.replicas.get(name, 1)))


def parse_replicas(text: str) -> dict[str, int]:
    """``"survey=3,notify=2"`` -> ``{"survey": 3, "notify": 2}``."""
    replicas: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, count = item.partition("=")
        name = name.strip()
        if not sep or name not in SERVICES or not count.strip().isdigit() or int(count) < 1:
            raise LaunchError(
                f"REPLICAS: expected service=count (services: {', '.join(SERVICES)}), got {item!r}"
            )
        replicas[name] = int(count)
    return replicas


def replica_names(name: str, count: int) -> list[str]:
    """The process names of a service's replicas: its own name when alone."""
    return [name] if count <= 1 else [f"{name}.{i}" for i in range(1, count + 1)]


def service_argv(python: str, name: str) -> list[str]:
    """A service's command: kit.runner (nameko run with a draining stop)."""
    return [python, "-m", "kit.runner", "--config", "deploy/nameko.yaml", f"{name}.service"]


def common_env(
    config: Config,
    *,
    smtp_url: str,
    sirene_url: str,
    public_url: str,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """What every process of the platform gets."""
    env = dict(os.environ if base is None else base)
    env.pop("PYTHONPATH", None)
    data_dir = Path(config.data_dir)
    env.update(
        {
            "AMQP_URI": config.amqp_uri,
            "DATA_DIR": str(data_dir),
            "FILES_DIR": str(data_dir / "files"),
            "SMTP_URL": smtp_url,
            "SIRENE_URL": sirene_url,
            "PUBLIC_URL": public_url,
            "AGENCY_EMAIL": config.agency_email,
            "APP_ENV": config.app_env,
            "PSYCOPG_WAIT_FUNC": "wait_select",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if config.clamd:
        env["FILES_CLAMD"] = config.clamd
    env.update(config.env)
    return env


def service_env(common: Mapping[str, str], name: str, root: Path = ROOT) -> dict[str, str]:
    env = dict(common)
    env["PYTHONPATH"] = os.pathsep.join([str(root / "libs" / "kit"), str(root / "services" / name)])
    return env


def gateway_env(
    common: Mapping[str, str],
    config: Config,
    *,
    port: int,
    session_secret: str,
    services: Iterable[str],
    root: Path = ROOT,
) -> dict[str, str]:
    """``SERVICES`` lists what was started: readiness then means "every
    running service answers", and a service not written yet does not hold
    the local run back (the launcher reports it as not started)."""
    env = dict(common)
    env.update(
        {
            "PYTHONPATH": os.pathsep.join([str(root / "gateway"), str(root / "libs" / "kit")]),
            "GATEWAY_BIND": f"{config.host}:{port}",
            "SESSION_SECRET": session_secret,
            "WEB_CONCURRENCY": str(config.web_concurrency),
            "SERVICES": ",".join(services),
        }
    )
    env.update(config.env)  # explicit overrides win here too
    return env


# --- processes ---------------------------------------------------------------


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log: Path
    long_running: bool = True
    argv: tuple[str, ...] = ()
    env: dict[str, str] | None = None
    service: str | None = None  # the service a replica belongs to


class System:
    """Every process of the platform, started in order and stopped together."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.data_dir = Path(config.data_dir).resolve()
        self.logs_dir = self.data_dir / "logs"
        self.processes: list[Process] = []
        self._started: list[Process] = []  # every spawn, for ``restart``
        self.started_services: list[str] = []
        self.skipped: dict[str, str] = {}
        self.gateway_url: str | None = None
        self.mail_url: str | None = None
        self.mail_api_url: str | None = None
        self.smtp_url: str | None = None
        self.sirene_url: str | None = None
        self.admin: dict | None = None
        self._lock = threading.Lock()
        self._stopped = False
        self._deadline = 0.0
        self._gateway_port = 0

    # process plumbing

    def spawn(
        self,
        name: str,
        argv: list[str],
        env: Mapping[str, str] | None = None,
        *,
        long_running: bool = True,
        log_name: str | None = None,
    ) -> Process:
        """Starts ``argv`` in its own process group (so Ctrl-C in a terminal
        reaches only the launcher, and ``stop`` reaches its children too),
        output to ``logs/<name>.log``."""
        with self._lock:
            if self._stopped:
                raise LaunchError("the system was stopped")
            self.logs_dir.mkdir(parents=True, exist_ok=True)
            log = self.logs_dir / f"{log_name or name}.log"
            with open(log, "wb") as out:
                popen = subprocess.Popen(
                    argv,
                    cwd=self.config.root,
                    env=dict(env) if env is not None else None,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            process = Process(
                name,
                popen,
                log,
                long_running,
                tuple(argv),
                dict(env) if env is not None else None,
                service=name.split(".", 1)[0] if name.split(".", 1)[0] in SERVICES else None,
            )
            self.processes.append(process)
            self._started.append(process)
            return process

    def replicas(self, service: str) -> list[str]:
        """The names of the running processes of ``service`` (its replicas)."""
        with self._lock:
            return [
                p.name
                for p in self.processes
                if (p.service == service or p.name == service) and p.popen.poll() is None
            ]

    def _running(self, name: str) -> Process:
        """The running process ``name``, or the last running replica of the
        service ``name``."""
        found = [p for p in self.processes if p.name == name and p.popen.poll() is None]
        found = found or [p for p in self.processes if p.service == name and p.popen.poll() is None]
        if not found:
            raise LaunchError(f"no running process named {name!r}")
        return found[-1]

    def kill(self, name: str, signum: int = signal.SIGKILL) -> None:
        """Fault injection: ``signum`` (SIGKILL by default: no goodbye, unacked
        messages go back to their queues) to the running process ``name`` (a
        replica, or a service's last replica) and its children; waits for it
        to exit (``stop_grace``, then SIGKILL)."""
        with self._lock:
            process = self._running(name)
            self.processes.remove(process)
        _signal_group(process.popen.pid, signum)
        try:
            process.popen.wait(timeout=self.config.stop_grace)
        except subprocess.TimeoutExpired:
            _signal_group(process.popen.pid, signal.SIGKILL)
            process.popen.wait(timeout=5)

    def send_signal(self, name: str, signum: int = signal.SIGTERM) -> Process:
        """Sends ``signum`` to the running process ``name`` (its leader only,
        as Kubernetes does to a container's first process) and returns at
        once; ``wait_exit`` then gives its code."""
        with self._lock:
            process = self._running(name)
        process.popen.send_signal(signum)
        return process

    def wait_exit(self, process: Process, timeout: float) -> int | None:
        """The exit code of ``process`` once it exited, None if it still
        runs after ``timeout`` seconds (it is left running). An exited
        process is no longer one of the system's."""
        try:
            code = process.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        with self._lock:
            if process in self.processes:
                self.processes.remove(process)
        _signal_group(process.popen.pid, signal.SIGKILL)  # children left behind
        return code

    def terminate(self, name: str, timeout: float | None = None) -> tuple[int | None, float]:
        """SIGTERM to ``name``; waits for its exit (``timeout``, default
        ``stop_grace``) and returns (exit code or None, seconds taken)."""
        started = time.monotonic()
        process = self.send_signal(name, signal.SIGTERM)
        code = self.wait_exit(process, self.config.stop_grace if timeout is None else timeout)
        return code, time.monotonic() - started

    def restart(self, name: str, signum: int = signal.SIGKILL) -> Process:
        """``kill`` (if it still runs) then the same command again, as it was
        last started (its log continues in ``logs/<name>-<n>.log``)."""
        with self._lock:
            started = [p for p in self._started if p.name == name]
            if not started:  # a service's name: its last replica
                started = [p for p in self._started if p.service == name]
                name = started[-1].name if started else name
            running = any(p.name == name and p.popen.poll() is None for p in self.processes)
        if not started:
            raise LaunchError(f"no process named {name!r} was started")
        if running:
            self.kill(name, signum)
        previous = started[-1]
        runs = len(list(self.logs_dir.glob(f"{name}-*.log"))) + 2
        return self.spawn(name, list(previous.argv), previous.env, log_name=f"{name}-{runs}")

    def check_alive(self) -> None:
        """Raises LaunchError if a long-running process has exited."""
        for process in list(self.processes):
            code = process.popen.poll()
            if process.long_running and code is not None:
                raise LaunchError(
                    f"{process.name} exited with code {code} (log: {process.log}):\n"
                    f"{log_tail(process.log)}"
                )

    def _remaining(self) -> float:
        return max(0.0, self._deadline - time.monotonic())

    def _wait_exit(self, process: Process, what: str) -> None:
        """Waits for a short-lived process; a failure is a LaunchError."""
        try:
            code = process.popen.wait(timeout=max(self._remaining(), 0.1))
        except subprocess.TimeoutExpired:
            raise LaunchError(
                f"{what} did not finish in time (log: {process.log}):\n{log_tail(process.log)}"
            ) from None
        if code != 0:
            raise LaunchError(
                f"{what} failed with code {code} (log: {process.log}):\n{log_tail(process.log)}"
            )

    def _wait_listening(
        self, process: Process, keys: tuple[str, ...], fixed: dict[str, int]
    ) -> dict[str, int]:
        """A helper announces its ports as a first JSON line; with fixed
        ports, an open port is enough."""
        while True:
            self.check_alive()
            announced = first_json_line(process.log, keys)
            if announced:
                return {k: int(announced[k]) for k in keys}
            if (
                fixed
                and all(fixed.get(k) for k in keys)
                and all(port_open("127.0.0.1", fixed[k]) for k in keys)
            ):
                return dict(fixed)
            if not self._remaining():
                raise LaunchError(
                    f"{process.name} did not start listening in time "
                    f"(log: {process.log}):\n{log_tail(process.log)}"
                )
            time.sleep(0.1)

    # start

    def start(self) -> System:
        """Starts everything; on any failure (or Ctrl-C) stops what started."""
        self._deadline = time.monotonic() + self.config.ready_timeout
        atexit.register(self.stop)
        try:
            self._check_broker()
            self.data_dir.mkdir(parents=True, exist_ok=True)
            (self.data_dir / "files").mkdir(exist_ok=True)
            self._start_helpers()
            common = self._common_env()
            self._migrate(common)
            self._seed_carte(common)
            self._start_services(common)
            self._start_gateway(common)
            self._wait_ready()
            self._seed(common)
        except BaseException:
            self.stop()
            raise
        return self

    def _check_broker(self) -> None:
        if reachable_amqp_address(self.config.amqp_uri, timeout=2) is None:
            raise LaunchError(f"RabbitMQ is not reachable at {mask_uri(self.config.amqp_uri)}")

    def _start_helpers(self) -> None:
        cfg, py = self.config, self.config.python
        catcher = sirene = None
        if cfg.smtp_url is None:
            catcher = self.spawn(
                "mailcatcher",
                [
                    py,
                    "deploy/mailcatcher.py",
                    "--smtp-port",
                    str(cfg.smtp_port),
                    "--http-port",
                    str(cfg.mail_http_port),
                ],
            )
        else:
            self.smtp_url = cfg.smtp_url
        if cfg.sirene_url is not None:
            self.sirene_url = cfg.sirene_url
        elif (cfg.root / "deploy" / "sirene_standin.py").is_file():
            sirene = self.spawn(
                "sirene", [py, "deploy/sirene_standin.py", "--port", str(cfg.sirene_port)]
            )
        else:
            self.skipped["sirene"] = "deploy/sirene_standin.py does not exist"
            self.sirene_url = f"http://127.0.0.1:{cfg.sirene_port or free_port()}"
        if catcher is not None:
            ports = self._wait_listening(
                catcher, ("smtp", "http"), {"smtp": cfg.smtp_port, "http": cfg.mail_http_port}
            )
            self.smtp_url = f"smtp://127.0.0.1:{ports['smtp']}"
            self.mail_url = f"http://127.0.0.1:{ports['http']}"
            self.mail_api_url = f"{self.mail_url}/api/messages"
        if sirene is not None:
            ports = self._wait_listening(sirene, ("port",), {"port": cfg.sirene_port})
            self.sirene_url = f"http://127.0.0.1:{ports['port']}"

    def _common_env(self) -> dict[str, str]:
        port = resolve_port(self.config.gateway_port, self.config.host)
        host = "127.0.0.1" if self.config.host in ("0.0.0.0", "") else self.config.host
        if self.config.gateway_port and port_open(host, port):
            raise LaunchError(
                f"port {port} is already in use: stop what listens there "
                "or choose another GATEWAY_PORT"
            )
        self.gateway_url = f"http://{host}:{port}"
        self._gateway_port = port
        return common_env(
            self.config,
            smtp_url=self.smtp_url,
            sirene_url=self.sirene_url,
            public_url=self.config.public_url or self.gateway_url,
        )

    def _migrate(self, common: Mapping[str, str]) -> None:
        running = []
        for name in self.config.services:
            if has_migrations(name, self.config.root):
                running.append(
                    self.spawn(
                        f"migrate-{name}",
                        [self.config.python, "-m", "kit.migrate", name],
                        service_env(common, name, self.config.root),
                        long_running=False,
                    )
                )
        # the durable event queues of every consumer (kit.topology), alongside
        # the migrations: an event published before its consumer starts is kept
        env = dict(common, PYTHONPATH=str(self.config.root / "libs" / "kit"))
        topology = self.spawn(
            "topology",
            [self.config.python, "-m", "kit.topology", "declare"],
            env,
            long_running=False,
        )
        for process in running:
            self._wait_exit(process, f"the migrations of {process.name[len('migrate-') :]}")
        self._wait_exit(topology, "the event queues' declaration (python -m kit.topology declare)")

    def _seed_carte(self, common: Mapping[str, str]) -> None:
        """carte's demo campaign and catalogue (``carte.seed``), written
        straight into its database before the service starts."""
        root = self.config.root
        if (
            not self.config.seed
            or "carte" not in self.config.services
            or not (root / "services" / "carte" / "carte" / "seed.py").is_file()
        ):
            return
        process = self.spawn(
            "seed-carte",
            [self.config.python, "-m", "carte.seed"],
            service_env(common, "carte", root),
            long_running=False,
        )
        self._wait_exit(process, "the demo data of carte (carte.seed)")

    def _start_services(self, common: Mapping[str, str]) -> None:
        for name in self.config.services:
            if not service_available(name, self.config.root):
                self.skipped[name] = f"services/{name}/{name}/service.py does not exist"
                continue
            env = service_env(common, name, self.config.root)
            for replica in replica_names(name, self.config.replica_count(name)):
                self.spawn(replica, service_argv(self.config.python, name), env)
            self.started_services.append(name)

    def _start_gateway(self, common: Mapping[str, str]) -> None:
        root = self.config.root
        if not (root / "gateway" / "gunicorn.conf.py").is_file():
            raise LaunchError("gateway/gunicorn.conf.py does not exist: no gateway to start")
        env = gateway_env(
            common,
            self.config,
            port=self._gateway_port,
            session_secret=self._session_secret(),
            services=self.started_services,
            root=root,
        )
        self.spawn(
            "gateway",
            [
                self.config.python,
                "-m",
                "gunicorn",
                "-c",
                "gateway/gunicorn.conf.py",
                "gateway:create_app()",
            ],
            env,
        )

    def _session_secret(self) -> str:
        """Given, or kept in the data folder so that local sessions survive a
        restart (development only: the gateway refuses a missing secret
        elsewhere)."""
        if self.config.session_secret:
            return self.config.session_secret
        path = self.data_dir / "session_secret"
        if path.is_file() and path.read_text().strip():
            return path.read_text().strip()
        secret = secrets.token_urlsafe(48)
        path.touch(mode=0o600)
        path.write_text(secret)
        return secret

    def _wait_ready(self) -> None:
        url = f"{self.gateway_url}/health/ready"
        last: requests.Response | str = "no answer"
        while True:
            self.check_alive()
            try:
                last = requests.get(url, timeout=5)
                if last.status_code == 200 or self._only_skipped_failing(last):
                    return
            except requests.RequestException as exc:
                last = type(exc).__name__
            if not self._remaining():
                raise LaunchError(self._not_ready_report(url, last))
            time.sleep(0.3)

    def _only_skipped_failing(self, response: requests.Response) -> bool:
        """While some services are still empty shells, the gateway reports
        them down: the system is as ready as it can be when every service
        that was started is ok."""
        skipped = [s for s in self.skipped if s in SERVICES]
        if not skipped:
            return False
        try:
            states = service_states(response.json(), self.started_services)
        except ValueError:
            return False
        return bool(states) and all(states.values())

    def _not_ready_report(self, url: str, last: requests.Response | str) -> str:
        answer = last if isinstance(last, str) else f"HTTP {last.status_code}: {last.text[:500]}"
        report = [
            f"the platform was not ready after {self.config.ready_timeout:.0f} s "
            f"({url} answered {answer})"
        ]
        suspects = list(self.started_services)
        if not isinstance(last, str):
            try:
                states = service_states(last.json(), self.started_services)
                suspects = [name for name, ok in states.items() if ok is False] or suspects
            except ValueError:
                pass
        for process in self.processes:
            if process.name == "gateway" or process.name in suspects:
                report.append(f"--- {process.name} ({process.log}):\n{log_tail(process.log, 25)}")
        return "\n".join(report)

    def _seed(self, common: Mapping[str, str]) -> None:
        root = self.config.root
        seed = root / "services" / "identity" / "identity"
        if not self.config.seed:
            return
        if not ((seed / "seed.py").is_file() or (seed / "seed" / "__init__.py").is_file()):
            self.skipped["seed"] = "services/identity/identity/seed.py does not exist"
            return
        out_path = self.logs_dir / "seed.out"
        env = service_env(common, "identity", root)
        with open(out_path, "wb") as out, open(self.logs_dir / "seed.log", "wb") as err:
            popen = subprocess.Popen(
                [self.config.python, "-m", "identity.seed"],
                cwd=root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        process = Process("seed", popen, self.logs_dir / "seed.log", long_running=False)
        self.processes.append(process)
        try:
            self._wait_exit(process, "the demo data (identity.seed)")
            lines = [ln for ln in out_path.read_text(errors="replace").splitlines() if ln.strip()]
        finally:
            out_path.unlink(missing_ok=True)  # it holds the admin's password
        try:
            self.admin = json.loads(lines[-1])
        except (IndexError, ValueError):
            raise LaunchError(
                "identity.seed did not print the admin credentials as its "
                f"last line (log: {process.log})"
            ) from None

    # stop

    def stop(self) -> None:
        """Stops every process this System started: SIGTERM to each process
        group (kit.runner and gunicorn drain on it), SIGKILL after
        ``stop_grace``. Safe to call twice, before ``start`` or after a
        failed one."""
        with self._lock:
            self._stopped = True
            processes, self.processes = self.processes, []
        atexit.unregister(self.stop)
        # Only groups whose leader still runs: a pid reaped long ago may
        # belong to someone else by now.
        processes = [p for p in processes if p.popen.poll() is None]
        for process in reversed(processes):  # the gateway first, helpers last
            _signal_group(process.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.config.stop_grace
        for process in processes:
            try:
                process.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process.popen.pid, signal.SIGKILL)
                try:
                    process.popen.wait(timeout=5)
                except subprocess.TimeoutExpired:  # pragma: no cover - unkillable
                    pass
        for process in processes:  # children left behind by a leader that exited
            _signal_group(process.popen.pid, signal.SIGKILL)

    def __enter__(self) -> System:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


# --- RabbitMQ for the local run ---------------------------------------------

RABBIT_MISSING = """\
RabbitMQ est injoignable à {uri}.
  Installez-le (Debian/Ubuntu : sudo apt-get install rabbitmq-server ; macOS : brew install
  rabbitmq) puis relancez, ou indiquez un serveur existant : AMQP_URI=amqp://user:pass@hôte:5672/
RabbitMQ is not reachable at {uri}.
  Install it (Debian/Ubuntu: sudo apt-get install rabbitmq-server; macOS: brew install
  rabbitmq) and run again, or point AMQP_URI at a running broker: AMQP_URI=amqp://user:pass@host:5672/"""


def ensure_rabbitmq(uri: str, log: Path, timeout: float = 90.0) -> bool:
    """Makes sure the broker answers. Returns True when this call started a
    local ``rabbitmq-server`` (then the caller stops it); raises LaunchError
    with what to do otherwise."""
    if reachable_amqp_address(uri, timeout=2) is not None:
        return False
    host, port = amqp_address(uri)
    server = shutil.which("rabbitmq-server")
    if host not in LOCAL_HOSTS or server is None or len(amqp_uris(uri)) > 1:
        raise LaunchError(RABBIT_MISSING.format(uri=mask_uri(uri)))
    print("Démarrage de RabbitMQ / starting RabbitMQ (rabbitmq-server -detached)…", flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        code = subprocess.call(
            [server, "-detached"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return True
        time.sleep(0.5)
    raise LaunchError(
        f"rabbitmq-server -detached (code {code}) did not open port {port} "
        f"within {timeout:.0f} s (log: {log}):\n{log_tail(log)}\n\n"
        + RABBIT_MISSING.format(uri=mask_uri(uri))
    )


def stop_rabbitmq() -> None:
    ctl = shutil.which("rabbitmqctl")
    if ctl:
        print("Arrêt de RabbitMQ / stopping RabbitMQ…", flush=True)
        subprocess.call(
            [ctl, "stop"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )


# --- command line ------------------------------------------------------------


def _banner(system: System) -> str:
    lines = [
        "",
        "Plateforme prête / Platform ready",
        "",
        f"  Adresse / URL:                 {system.gateway_url}/",
    ]
    if system.mail_url:
        lines.append(f"  Courriels reçus / Mail catcher: {system.mail_url}/")
    if system.admin:
        lines.append(
            f"  Administrateur / Admin:        {system.admin.get('email')}"
            f"  /  {system.admin.get('password')}"
        )
        if system.admin.get("carte"):
            lines.append(f"  Carte des formations:          {system.gateway_url}/carte/connexion")
        for account in system.admin.get("carte") or []:
            lines.append(
                f"    {account.get('kind', ''):<28}{account.get('identifier')}"
                f"  /  {account.get('password')}"
            )
    lines.append(f"  Journaux / Logs:               {system.logs_dir}/")
    for name, reason in system.skipped.items():
        lines.append(f"  Non démarré / Not started:     {name} ({reason})")
    lines += ["", "Ctrl-C pour arrêter / Ctrl-C to stop.", ""]
    return "\n".join(lines)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run(environ: Mapping[str, str]) -> int:
    try:
        config = Config.from_env(environ)
    except LaunchError as exc:
        print(exc, file=sys.stderr)
        return 2
    started_rabbit = False
    system = System(config)
    # Ctrl-C, a closed terminal and `kill` all stop what was started, even
    # when the launcher itself was started with SIGINT ignored (`cmd &`).
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    try:
        started_rabbit = ensure_rabbitmq(config.amqp_uri, system.logs_dir / "rabbitmq.log")
        print("Démarrage de la plateforme / starting the platform…", flush=True)
        system.start()
        print(_banner(system), flush=True)
        while True:
            system.check_alive()
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nArrêt / stopping…", flush=True)
        return 0
    except LaunchError as exc:
        print(f"\nÉchec du démarrage / failed: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the stop short
        system.stop()
        if started_rabbit:
            stop_rabbitmq()
        signal.signal(signal.SIGINT, signal.default_int_handler)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] != ["run"]:
        print(
            "usage: python deploy/launcher.py run\n\n"
            "Starts every service, the gateway, a mail catcher and a SIRENE stand-in.\n"
            "Environment: DATA_DIR (./data), AMQP_URI, GATEWAY_PORT (8600), SMTP_PORT (8625),\n"
            "MAIL_HTTP_PORT (8680), SIRENE_PORT (8690), <SERVICE>_DB_URL, SESSION_SECRET,\n"
            "REPLICAS (e.g. survey=3,notify=2), SHUTDOWN_GRACE_SECONDS (30), STOP_GRACE (40).",
            file=sys.stderr,
        )
        return 2
    return run(os.environ)


if __name__ == "__main__":
    sys.exit(main())
