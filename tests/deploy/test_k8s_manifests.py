"""deploy/k8s, rendered by kustomize as `kubectl apply -k` would, checked offline: every object
against its schema (Kubernetes' own kinds with kubernetes-validate, the operators' kinds with
the CRD schemas in deploy/schemas, strictly: an unknown field is an error), and against the
code: settings the containers read exist, probes hit the worker's pages, the drain fits in the
grace period, KEDA watches the real scoring group and scales no further than the partitions,
the KafkaTopics are `init`'s plan, the Kafka user may do what the worker does.

Part of `make test` (which renders with `kubectl kustomize`, or with kustomize built with Go
when kubectl is missing; `make deploy-check` runs these alone).
"""

from __future__ import annotations

import gzip
import json
import os
import shlex
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from stream_app.provisioning.topics import topic_plans
from stream_app.settings import KafkaSettings, Settings, known_variables, load_settings
from stream_app.use_cases.spec import load_use_case

pytestmark = pytest.mark.deploy

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
CRDS = ROOT / "deploy" / "schemas" / "crds"
KUBERNETES_VERSION = "1.31"
TARGETS = ["base", "overlays/existing-clusters", "overlays/operators"]


def kustomize() -> list[str]:
    """The command that renders a folder: $KUSTOMIZE (as make sets it: `kubectl kustomize`
    or `.stream-app/bin/kustomize build`), else a kustomize on PATH."""
    if command := os.environ.get("KUSTOMIZE"):
        return shlex.split(command)
    found = shutil.which("kustomize")
    assert found, "no kustomize: make test (or make deploy-check) provides one"
    return [found, "build"]


@cache
def rendered(target: str) -> list[dict[str, Any]]:
    result = subprocess.run([*kustomize(), str(K8S / target)], capture_output=True,
                            text=True, check=False, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def strict(schema: Any) -> Any:
    """The schema with unknown fields refused wherever it lists the known ones (as the API
    server's strict field validation does)."""
    if isinstance(schema, dict):
        schema = {key: strict(value) for key, value in schema.items()}
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):  # fmt: skip
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


@cache
def crd_schema(api_version: str, kind: str) -> Any:
    group, version = api_version.split("/")
    path = CRDS / f"{group}_{kind.lower()}_{version}.json.gz"
    assert path.exists(), f"no schema for {api_version} {kind} in deploy/schemas/crds"
    return strict(json.loads(gzip.decompress(path.read_bytes())))


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = of_kind(docs, kind)
    return found


def config_map(docs: list[dict[str, Any]], name: str) -> dict[str, str]:
    """The data of the generated ConfigMap ``name`` (kustomize appends a content hash)."""
    (found,) = [d for d in of_kind(docs, "ConfigMap")
                if d["metadata"]["name"].rsplit("-", 1)[0] == name]  # fmt: skip
    data: dict[str, str] = found["data"]
    return data


def settings_env(docs: list[dict[str, Any]]) -> dict[str, str]:
    return config_map(docs, "stream-app-settings")


@pytest.mark.parametrize("target", TARGETS)
def test_every_object_matches_its_schema(target: str) -> None:
    docs = rendered(target)
    assert docs
    for doc in docs:
        name = f"{doc['kind']} {doc['metadata']['name']}"
        if "." in doc["apiVersion"].split("/")[0] and not doc["apiVersion"].startswith(
            ("apps/", "batch/", "policy/")
        ):
            try:
                jsonschema.Draft7Validator(crd_schema(doc["apiVersion"], doc["kind"])).validate(doc)
            except jsonschema.ValidationError as exc:
                raise AssertionError(
                    f"{target}: {name}: {exc.message} at {list(exc.path)}"
                ) from None
        else:
            try:
                kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                raise AssertionError(
                    f"{target}: {name}: {exc.message} at {list(exc.path)}"
                ) from None


def container_env(docs: list[dict[str, Any]]) -> set[str]:
    names = set()
    for doc in of_kind(docs, "Deployment") + of_kind(docs, "Job"):
        spec = doc["spec"]["template"]["spec"]
        for container in spec["containers"] + spec.get("initContainers", []):
            names |= {e["name"] for e in container.get("env", [])}
    return names


@pytest.mark.parametrize("target", TARGETS)
def test_the_containers_read_only_settings_that_exist_and_they_validate(
    target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = rendered(target)
    env = settings_env(docs)
    unknown = (set(env) | container_env(docs)) - known_variables()
    assert not unknown, f"not settings: {sorted(unknown)}"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    load_settings()  # the values parse (lists, numbers, literals), as the worker reads them


@pytest.mark.parametrize("target", TARGETS)
def test_every_container_serves_the_use_case_spec_of_its_config_map(
    target: str, tmp_path: Path
) -> None:
    docs = rendered(target)
    spec = tmp_path / "use-case.toml"
    spec.write_text(config_map(docs, "stream-app-use-case")["use-case.toml"])
    assert load_use_case(str(spec)).name  # a valid spec (`stream-app spec check` would pass)
    served = settings_env(docs)["STREAM_APP_USE_CASE"]
    for doc in of_kind(docs, "Deployment") + of_kind(docs, "Job"):
        pod = doc["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in pod["containers"] + pod.get("initContainers", []):
            (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == served]
            source = volumes[mount["name"]]["configMap"]["name"]
            assert source.startswith("stream-app-use-case")


@pytest.mark.parametrize("target", TARGETS)
def test_the_worker_probes_its_pages_and_drains_inside_its_grace_period(target: str) -> None:
    docs = rendered(target)
    worker = one(docs, "Deployment")
    pod = worker["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["worker"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    port = next(p for p in container["ports"] if p["name"] == "http")["containerPort"]
    assert port == Settings().worker.web_port
    env = settings_env(docs)
    assert env["STREAM_APP_WORKER__WEB_HOST"] == "0.0.0.0"
    drain = float(env["STREAM_APP_WORKER__SHUTDOWN_TIMEOUT_S"])
    assert pod["terminationGracePeriodSeconds"] > drain + 10
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert worker["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == worker["spec"]["selector"]["matchLabels"]
    monitor = one(docs, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


@pytest.mark.parametrize("target", TARGETS)
def test_keda_scales_on_the_scoring_group_up_to_the_partitions(target: str) -> None:
    docs = rendered(target)
    env = settings_env(docs)
    scaled = one(docs, "ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == one(docs, "Deployment")["metadata"]["name"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["metadata"]["consumerGroup"] == f"{env['STREAM_APP_WORKER__APP_ID']}-scoring"
    assert trigger["metadata"]["topic"] == Settings().kafka.topics.client_events
    assert trigger["metadata"]["bootstrapServers"] == env["STREAM_APP_KAFKA__BOOTSTRAP_SERVERS"]
    assert scaled["spec"]["maxReplicaCount"] <= int(env["STREAM_APP_KAFKA__PARTITIONS"])
    if env.get("STREAM_APP_KAFKA__SECURITY_PROTOCOL", "PLAINTEXT") != "PLAINTEXT":
        auth = one(docs, "TriggerAuthentication")
        assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]


def test_the_operators_run_what_init_would_create() -> None:
    docs = rendered("overlays/operators")
    env = settings_env(docs)
    kafka = KafkaSettings(
        partitions=int(env["STREAM_APP_KAFKA__PARTITIONS"]),
        replication_factor=int(env["STREAM_APP_KAFKA__REPLICATION_FACTOR"]),
    )
    topics = {t["metadata"]["name"]: t["spec"] for t in of_kind(docs, "KafkaTopic")}
    plans = {p.name: p for p in topic_plans(kafka)}
    assert set(topics) == set(plans)
    for name, plan in plans.items():
        assert topics[name]["partitions"] == plan.partitions
        assert topics[name]["replicas"] == plan.replication_factor
        assert plan.config.items() <= topics[name]["config"].items()
    cluster = one(docs, "Kafka")["metadata"]["name"]
    assert env["STREAM_APP_KAFKA__BOOTSTRAP_SERVERS"] == f"{cluster}-kafka-bootstrap:9093"
    user = one(docs, "KafkaUser")
    assert user["spec"]["authentication"]["type"] == "scram-sha-512"
    assert env["STREAM_APP_KAFKA__SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert env["STREAM_APP_KAFKA__SASL_USERNAME"] == user["metadata"]["name"]
    groups = [a["resource"] for a in user["spec"]["authorization"]["acls"]
              if a["resource"]["type"] == "group"]  # fmt: skip
    assert env["STREAM_APP_WORKER__APP_ID"].startswith(groups[0]["name"])
    cassandra = one(docs, "K8ssandraCluster")
    (dc,) = cassandra["spec"]["cassandra"]["datacenters"]
    assert dc["size"] >= int(env["STREAM_APP_CASSANDRA__REPLICATION_FACTOR"]) == 3
    assert env["STREAM_APP_CASSANDRA__REPLICATION_STRATEGY"] == "NetworkTopologyStrategy"
    assert env["STREAM_APP_CASSANDRA__LOCAL_DC"] == dc["metadata"]["name"]
    service = f"{cassandra['metadata']['name']}-{dc['metadata']['name']}-service"
    assert json.loads(env["STREAM_APP_CASSANDRA__CONTACT_POINTS"]) == [service]
