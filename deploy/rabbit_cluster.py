"""A three-node RabbitMQ cluster on loopback, for fault tests and by hand.

Each node is its own ``rabbitmq-server`` (``rabbitA@localhost`` …) with free
ports (AMQP, Erlang distribution, management), its data and logs under one
temporary directory and an Erlang cookie of its own (``HOME`` points there, so
the nodes and ``rabbitmqctl`` share it). The system broker on 5672 is not
touched. Nodes 2 and 3 join node 1; ``stop()`` stops every node
(``rabbitmqctl stop``, then its pid) and removes the directory.

    python -m deploy.rabbit_cluster          # start, print the AMQP_URI, wait for Ctrl-C

In tests::

    with RabbitCluster() as cluster:
        cluster.amqp_uri("vhost")   # "amqp://guest:guest@127.0.0.1:p1/vhost;…;…:p3/vhost"
        cluster.nodes[0].management_url      # the management API of node 1 (any node will do)
        cluster.api("/api/vhosts", via=1)    # a GET on node 2's management API (JSON)
        cluster.connections_by_node("vhost", via=1)  # {"rabbitA@localhost": 12, …}
        cluster.stop_node(0)
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

RABBIT_BIN = Path(os.environ.get("RABBITMQ_BIN", "/usr/lib/rabbitmq/bin"))
NAMES = ("rabbitA", "rabbitB", "rabbitC")


class ClusterError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Node:
    name: str  # rabbitA@localhost
    amqp_port: int
    dist_port: int
    management_port: int
    base: Path
    process: subprocess.Popen | None = None

    @property
    def management_url(self) -> str:
        return f"http://guest:guest@127.0.0.1:{self.management_port}"


class RabbitCluster:
    def __init__(self, names: tuple[str, ...] = NAMES, root: str | Path | None = None):
        self.root = Path(root or tempfile.mkdtemp(prefix="rabbit-cluster-"))
        self.home = self.root / "home"
        self.nodes: list[Node] = []
        used: set[int] = set()
        for name in names:
            ports = []
            while len(ports) < 3:
                port = free_port()
                if port not in used and port < 60000:  # the dist port + 20000 is the CLI's range
                    used.add(port)
                    ports.append(port)
            self.nodes.append(Node(f"{name}@localhost", *ports, base=self.root / name))
        self.start_seconds: float | None = None

    # --- environment -------------------------------------------------------------

    def _env(self, node: Node) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            HOME=str(self.home),
            RABBITMQ_NODENAME=node.name,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(node.amqp_port),
            RABBITMQ_DIST_PORT=str(node.dist_port),
            RABBITMQ_MNESIA_BASE=str(node.base / "mnesia"),
            RABBITMQ_LOG_BASE=str(node.base / "log"),
            RABBITMQ_CONFIG_FILE=str(node.base / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(node.base / "advanced.config"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(node.base / "enabled_plugins"),
            RABBITMQ_PID_FILE=str(node.base / "rabbit.pid"),
            RABBITMQ_CONF_ENV_FILE=str(node.base / "rabbitmq-env.conf"),
            RABBITMQ_LOGS=str(node.base / "log" / "rabbit.log"),
        )
        env.pop("RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS", None)
        return env

    def ctl(self, node: Node, *args: str, timeout: float = 60, check: bool = True):
        result = subprocess.run(
            [str(RABBIT_BIN / "rabbitmqctl"), "-n", node.name, *args],
            env=self._env(node),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise ClusterError(
                f"rabbitmqctl -n {node.name} {' '.join(args)}: {result.stdout}{result.stderr}"
            )
        return result

    def _write_files(self, node: Node) -> None:
        (node.base / "log").mkdir(parents=True, exist_ok=True)
        (node.base / "mnesia").mkdir(parents=True, exist_ok=True)
        (node.base / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{node.amqp_port}\n"
            f"management.tcp.port = {node.management_port}\n"
            "management.tcp.ip = 127.0.0.1\n"
            "cluster_partition_handling = pause_minority\n"
            # the management API's figures (connections, consumers) lag by at
            # most this (default 5 s): tests read them
            "collect_statistics_interval = 1000\n"
            "log.console = false\n"
        )
        (node.base / "advanced.config").write_text("[].\n")
        (node.base / "enabled_plugins").write_text("[rabbitmq_management].\n")
        (node.base / "rabbitmq-env.conf").write_text("")

    # --- life cycle --------------------------------------------------------------

    def start(self, timeout: float = 120) -> RabbitCluster:
        began = time.monotonic()
        self.home.mkdir(parents=True, exist_ok=True)
        cookie = self.home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(20).upper())
        cookie.chmod(0o400)
        try:
            for node in self.nodes:
                self._write_files(node)
                self._launch(node)
            for node in self.nodes:
                self._await(node, timeout)
            first = self.nodes[0]
            for node in self.nodes[1:]:
                self.ctl(node, "stop_app")
                self.ctl(node, "join_cluster", first.name)
                self.ctl(node, "start_app")
            for node in self.nodes:
                self._await(node, timeout)
            self._check_members()
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        return self

    def _launch(self, node: Node) -> None:
        log = open(node.base / "log" / "server.out", "ab")  # noqa: SIM115 - lives with the node
        node.process = subprocess.Popen(
            [str(RABBIT_BIN / "rabbitmq-server")],
            env=self._env(node),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=node.base,
        )
        log.close()

    def _await(self, node: Node, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if node.process is not None and node.process.poll() is not None:
                raise ClusterError(f"{node.name} exited: see {node.base / 'log'}")
            result = self.ctl(node, "await_startup", "--timeout", "30", timeout=45, check=False)
            if result.returncode == 0 and self._management_up(node):
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"{node.name} did not start: {result.stdout}{result.stderr}")
            time.sleep(0.5)

    def _management_up(self, node: Node) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", node.management_port), timeout=1):
                return True
        except OSError:
            return False

    def _check_members(self) -> None:
        status = self.ctl(self.nodes[0], "cluster_status", "--formatter", "json").stdout
        for node in self.nodes:
            if node.name not in status:
                raise ClusterError(f"{node.name} is not in the cluster: {status}")

    def running_nodes(self) -> list[str]:
        import json

        for node in self.nodes:
            result = self.ctl(node, "cluster_status", "--formatter", "json", check=False)
            if result.returncode == 0:
                return sorted(json.loads(result.stdout).get("running_nodes", []))
        return []

    def stop_node(self, index: int) -> None:
        """Stop the RabbitMQ application of one node (its Erlang VM stays, as after a crash
        of the broker on a machine that stays up); ``start_node`` brings it back."""
        self.ctl(self.nodes[index], "stop_app", timeout=90)

    def start_node(self, index: int) -> None:
        node = self.nodes[index]
        self.ctl(node, "start_app", timeout=120)
        self._await(node, 120)

    def kill_node(self, index: int) -> None:
        """SIGKILL one node's whole Erlang VM (a machine lost)."""
        node = self.nodes[index]
        if node.process is not None and node.process.poll() is None:
            os.killpg(node.process.pid, signal.SIGKILL)
            node.process.wait(10)

    def stop(self) -> None:
        for node in self.nodes:
            if node.process is None or node.process.poll() is not None:
                continue
            try:
                self.ctl(node, "stop", timeout=60, check=False)
                node.process.wait(30)
            except (subprocess.TimeoutExpired, OSError):
                pass
            if node.process.poll() is None:
                try:
                    os.killpg(node.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                node.process.wait(10)
        # the Erlang port mapper daemon is shared with the system broker: left alone
        shutil.rmtree(self.root, ignore_errors=True)

    # --- clients -----------------------------------------------------------------

    def index_of(self, node_name: str) -> int:
        return [node.name for node in self.nodes].index(node_name)

    def api(self, path: str, via: int = 0, timeout: float = 10):
        """GET ``path`` on the management API of node ``via``; the decoded JSON."""
        import base64
        import json
        import urllib.request

        node = self.nodes[via]
        request = urllib.request.Request(f"http://127.0.0.1:{node.management_port}{path}")
        request.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())

    def connections_by_node(self, vhost: str, via: int = 0) -> dict[str, int]:
        """AMQP connections of ``vhost`` per node (every node named, 0 included)."""
        path = urllib.parse.quote(vhost, safe="")
        counts = {node.name: 0 for node in self.nodes}
        for connection in self.api(f"/api/vhosts/{path}/connections?columns=node", via):
            counts[connection["node"]] = counts.get(connection["node"], 0) + 1
        return counts

    def amqp_uris(self, vhost: str = "/") -> list[str]:
        path = urllib.parse.quote(vhost, safe="")
        return [f"amqp://guest:guest@127.0.0.1:{node.amqp_port}/{path}" for node in self.nodes]

    def amqp_uri(self, vhost: str = "/") -> str:
        """One AMQP_URI naming every node, ``;``-separated (kombu's failover list)."""
        return ";".join(self.amqp_uris(vhost))

    def __enter__(self) -> RabbitCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main() -> int:
    cluster = RabbitCluster()
    print(f"starting three RabbitMQ nodes under {cluster.root} …", flush=True)
    cluster.start()
    print(f"cluster up in {cluster.start_seconds:.1f} s")
    for node in cluster.nodes:
        print(f"  {node.name}: amqp {node.amqp_port}, management {node.management_port}")
    print(f"AMQP_URI={cluster.amqp_uri('/')}")
    print("Ctrl-C stops the nodes and removes their data.", flush=True)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
