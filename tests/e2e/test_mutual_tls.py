"""stream-app against a broker that requires client certificates (mutual TLS), reached ONLY
through passed-through librdkafka properties: `stream-app services client-cert` signs a
client's key with the project's CA and prints `STREAM_APP_KAFKA__SECURITY_PROTOCOL=SSL` and
`STREAM_APP_KAFKA__CLIENT_PROPERTIES` (ssl.ca.location, ssl.certificate.location,
ssl.key.location); nothing else in the settings names a TLS file.

The broker runs on ports and a home folder of this module's own (`services up kafka` with
those settings serves SSL with `ssl.client.auth=required`); Cassandra is the suite's, in a
keyspace of the module's own. `init`, `bootstrap`, the worker (Faust's aiokafka clients and
the confluent-kafka batch consumers and producers), `simulate` and `tail` go through it; a
client without a certificate, or with one from another CA, is refused with a clear error.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stream_app.errors import ConfigurationError
from stream_app.kafka.admin import reach
from stream_app.services.tls import issue_client_certificate
from stream_app.settings import KafkaSettings, Settings, load_settings
from tests.conftest import consume_all, free_port
from tests.e2e.conftest import CLI, run_cli, wait_for
from tests.e2e.test_services_command import project_jvms

pytestmark = pytest.mark.own_services  # a broker of the module's own


def printed_variables(output: str) -> dict[str, str]:
    """The NAME=value lines `services client-cert` prints, as a shell would read them."""
    return dict(
        shlex.split(line)[0].split("=", 1) for line in output.splitlines() if "=" in line[:40]
    )


@pytest.fixture(scope="module")
def mutual_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    root = tmp_path_factory.mktemp("mtls")
    home = root / "home"
    home.mkdir()
    (home / "lib").symlink_to(load_settings().services.home.resolve() / "lib")
    keyspace = f"mtls_{uuid.uuid4().hex[:8]}"
    env = {
        "STREAM_APP_SERVICES__HOME": str(home),
        "STREAM_APP_SERVICES__KAFKA_CONTROLLER_PORT": str(free_port()),
        "STREAM_APP_SERVICES__KAFKA_HEAP_MB": "384",
        "STREAM_APP_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "STREAM_APP_KAFKA__PARTITIONS": "2",
        "STREAM_APP_CASSANDRA__KEYSPACE": keyspace,
        "STREAM_APP_WORKER__WEB_PORT": str(free_port()),
        "STREAM_APP_LIFECYCLE__ORCHESTRATOR": "false",
    }
    issued = run_cli("services", "client-cert", "--out", str(root / "certs"), env=env)
    assert issued.returncode == 0, issued.stderr
    env |= printed_variables(issued.stdout)
    assert env["STREAM_APP_KAFKA__SECURITY_PROTOCOL"] == "SSL"
    up = run_cli("services", "up", "kafka", env=env)
    try:
        assert up.returncode == 0, up.stderr + up.stdout
        assert "kafka: ready in" in up.stdout
        yield env
    finally:
        run_cli("services", "down", "kafka", env=env)
        assert project_jvms(home) == []
        from stream_app.cassandra_session import open_cluster

        cluster = open_cluster(load_settings().cassandra)
        cluster.connect().execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
        cluster.shutdown()


def kafka_of(env: dict[str, str], properties: dict[str, Any] | None = None) -> KafkaSettings:
    given = json.loads(env["STREAM_APP_KAFKA__CLIENT_PROPERTIES"])
    return KafkaSettings(
        bootstrap_servers=env["STREAM_APP_KAFKA__BOOTSTRAP_SERVERS"],
        security_protocol="SSL",
        partitions=2,
        client_properties=given if properties is None else properties,
    )


def test_only_a_client_holding_a_certificate_of_the_projects_ca_gets_in(
    mutual_tls: dict[str, str], tmp_path: Path
) -> None:
    kafka = kafka_of(mutual_tls)
    assert kafka.ssl_ca_file is None  # every TLS file comes through the passed properties
    reach(kafka, timeout_s=10)
    ca = kafka.client_properties["ssl.ca.location"]
    without = kafka_of(mutual_tls, {"ssl.ca.location": ca})
    with pytest.raises(ConfigurationError, match="refused the connection") as refused:
        reach(without, timeout_s=10)
    assert "client certificate none" in str(refused.value)
    assert "requires a client certificate signed by a CA it trusts" in str(refused.value)
    foreign = issue_client_certificate(tmp_path / "other-ca", tmp_path / "foreign", "intruder")
    stranger = kafka_of(mutual_tls, {**foreign.properties(), "ssl.ca.location": ca})
    with pytest.raises(ConfigurationError, match=r"refused the connection.*certificate unknown"):
        reach(stranger, timeout_s=10)

    no_certificate = json.dumps({"ssl.ca.location": ca})
    init = run_cli(
        "init", env={**mutual_tls, "STREAM_APP_KAFKA__CLIENT_PROPERTIES": no_certificate}
    )
    assert init.returncode == 1
    assert "refused the connection" in init.stderr
    assert "Traceback" not in init.stderr


def test_the_worker_scores_through_mutual_tls(mutual_tls: dict[str, str], tmp_path: Path) -> None:
    init = run_cli("init", env=mutual_tls)
    assert init.returncode == 0, init.stderr
    boot = run_cli("bootstrap", "--days", "0.3", env=mutual_tls)
    assert boot.returncode == 0, boot.stderr
    assert json.loads(boot.stdout.splitlines()[-1])["role"] == "champion"

    log = tmp_path / "worker.log"
    with log.open("wb") as handle:
        worker = subprocess.Popen([*CLI, "worker"], env={**os.environ, **mutual_tls},
                                  stdout=handle, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_for(lambda: "client-events consumer assigned" in log.read_text(), 90, "the worker")
        run = run_cli("simulate", "--rate", "20", "--duration", "4", "--no-wait-labels",
                      "--run-id", "mtls", env=mutual_tls)  # fmt: skip
        assert run.returncode == 0, run.stderr
        events = json.loads(run.stdout)["client_events"]
        settings = Settings(kafka=kafka_of(mutual_tls))
        predictions = consume_all(settings, settings.kafka.topics.predictions, events, 90)
        assert len({json.loads(m.value())["event_id"] for m in predictions}) == events
        tail = run_cli("tail", "predictions", "--from-beginning", "--max", "2", env=mutual_tls)
        assert tail.returncode == 0, tail.stderr
        assert len(tail.stdout.splitlines()) == 2
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0, log.read_text()[-3000:]
