"""stream-app on secured servers, as `stream-app services up` runs them from the settings:
Kafka over SASL_SSL with SCRAM-SHA-256 (a CA and certificate made by the project, the SCRAM
users created at start), and Cassandra with PasswordAuthenticator over TLS.

A second broker and node run on ports and a home folder of this module's own (the jars are
shared with the suite's services). Every client of the project goes through them: the
services' probes, `init`, `bootstrap` (history and training), the worker (Faust's aiokafka
clients and the confluent-kafka batch consumers), `simulate`, `status`, `tail`, `replay`
and `bench e2e`. Whoever lacks the password or the CA is refused, with a clear error, and
no password shows in any output or log.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydantic import SecretStr

from stream_app.cassandra_session import open_cluster
from stream_app.errors import ConfigurationError
from stream_app.kafka.admin import reach
from stream_app.services.cassandra_server import _login, create_client_role
from stream_app.services.kafka_security import ADMIN_USER
from stream_app.settings import (
    CassandraSettings,
    KafkaSettings,
    ServicesSettings,
    Settings,
    WorkerSettings,
    load_settings,
)
from tests.conftest import consume_all, free_port
from tests.e2e.conftest import CLI, run_cli, wait_for
from tests.e2e.test_services_command import project_jvms

pytestmark = pytest.mark.own_services  # a secured Kafka and Cassandra of the module's own

# Characters that break naive quoting in JAAS lines, CQL literals and shells.
KAFKA_PASSWORD = 'kafka-Pässword,"]=x;'
CASSANDRA_PASSWORD = "cass pa$$word 'quoted\" \\"
ROTATED_PASSWORD = "rotated-kafka-password"


@dataclass
class Secured:
    env: dict[str, str]
    settings: Settings
    home: Path
    secrets_dir: Path
    outputs: list[str] = field(default_factory=list)

    def run(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        result = run_cli(*args, env={**self.env, **(env or {})}, timeout=timeout)
        self.outputs.append(result.stdout + result.stderr)
        return result

    def admin_password(self, service: str) -> str:
        return (self.home / service / "admin.password").read_text().strip()


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    root = tmp_path_factory.mktemp("secured")
    home = root / "home"
    home.mkdir()
    # The suite's services fetched the jars already: share them rather than copy.
    (home / "lib").symlink_to(load_settings().services.home.resolve() / "lib")
    secrets_dir = root / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "STREAM_APP_KAFKA__SASL_PASSWORD").write_text(KAFKA_PASSWORD)
    kafka_port, cassandra_port, web_port = free_port(), free_port(), free_port()
    ca = str(home / "tls" / "ca.pem")
    env = {
        "STREAM_APP_SERVICES__HOME": str(home),
        "STREAM_APP_SERVICES__KAFKA_CONTROLLER_PORT": str(free_port()),
        "STREAM_APP_SERVICES__CASSANDRA_STORAGE_PORT": str(free_port()),
        "STREAM_APP_SERVICES__CASSANDRA_HEAP_MB": "512",
        "STREAM_APP_SERVICES__KAFKA_HEAP_MB": "384",
        "STREAM_APP_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka_port}",
        "STREAM_APP_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        # the clients on SHA-256, the broker's own login on SHA-512: both mechanisms in use
        "STREAM_APP_KAFKA__SASL_MECHANISM": "SCRAM-SHA-256",
        "STREAM_APP_KAFKA__SASL_USERNAME": "stream-app",
        "STREAM_APP_KAFKA__SSL_CA_FILE": ca,
        "STREAM_APP_KAFKA__PARTITIONS": "2",
        "STREAM_APP_SECRETS_DIR": str(secrets_dir),  # the Kafka password comes from a file
        "STREAM_APP_CASSANDRA__PORT": str(cassandra_port),
        "STREAM_APP_CASSANDRA__USERNAME": "stream_app",
        "STREAM_APP_CASSANDRA__PASSWORD": CASSANDRA_PASSWORD,  # this one from the environment
        "STREAM_APP_CASSANDRA__SSL_CA_FILE": ca,
        "STREAM_APP_WORKER__WEB_PORT": str(web_port),
        "STREAM_APP_LIFECYCLE__ORCHESTRATOR": "false",
    }
    settings = Settings(
        kafka=KafkaSettings(
            bootstrap_servers=f"127.0.0.1:{kafka_port}",
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-256",
            sasl_username="stream-app",
            sasl_password=SecretStr(KAFKA_PASSWORD),
            ssl_ca_file=Path(ca),
            partitions=2,
        ),
        cassandra=CassandraSettings(
            port=cassandra_port,
            username="stream_app",
            password=SecretStr(CASSANDRA_PASSWORD),
            ssl_ca_file=Path(ca),
        ),
        services=ServicesSettings(home=home),
        worker=WorkerSettings(web_port=web_port),
    )
    stack = Secured(env, settings, home, secrets_dir)
    up = stack.run("services", "up")
    try:
        assert up.returncode == 0, up.stderr + up.stdout
        assert "kafka: ready in" in up.stdout
        assert "cassandra: ready in" in up.stdout
        yield stack
    finally:
        stack.run("services", "down")
        assert project_jvms(home) == []


def test_the_servers_refuse_whoever_lacks_the_password_or_the_ca(secured: Secured) -> None:
    status = secured.run("services", "status")
    assert status.returncode == 0, status.stdout
    assert status.stdout.count("ready True") == 2

    kafka = secured.settings.kafka
    reach(kafka, timeout_s=10)  # the clients' own settings are let in
    wrong = kafka.model_copy(update={"sasl_password": SecretStr("wrong")})
    with pytest.raises(ConfigurationError, match="invalid credentials"):
        reach(wrong, timeout_s=10)
    broker_user = kafka.model_copy(update={"sasl_username": ADMIN_USER})  # with our password
    with pytest.raises(ConfigurationError, match="invalid credentials"):
        reach(broker_user, timeout_s=10)
    with pytest.raises(ConfigurationError, match="certificate verify failed"):
        reach(kafka.model_copy(update={"ssl_ca_file": None}), timeout_s=10)
    with pytest.raises(ConfigurationError, match="cannot reach"):
        reach(kafka.model_copy(update={"security_protocol": "PLAINTEXT"}), timeout_s=3)

    cassandra = secured.settings.cassandra
    assert _login(cassandra, "stream_app", CASSANDRA_PASSWORD) is not None
    assert _login(cassandra, "stream_app", "wrong") is None
    assert _login(cassandra, "cassandra", "cassandra") is None  # the default superuser is off
    anonymous = open_cluster(cassandra.model_copy(update={"username": None, "password": None}))
    with pytest.raises(Exception, match="requires authentication"):
        anonymous.connect()
    anonymous.shutdown()
    in_clear = open_cluster(cassandra.model_copy(update={"ssl_ca_file": None}), 3.0)
    with pytest.raises(Exception, match="Unable to connect"):
        in_clear.connect()
    in_clear.shutdown()

    # The command line says why, in one line, without a traceback.
    bad_cassandra = secured.run("init", env={"STREAM_APP_CASSANDRA__PASSWORD": "wrong"})
    assert bad_cassandra.returncode == 1
    assert "refused the login" in bad_cassandra.stderr
    assert "Traceback" not in bad_cassandra.stderr
    (secured.secrets_dir / "STREAM_APP_KAFKA__SASL_PASSWORD").write_text("wrong")
    try:
        bad_kafka = secured.run("init")
    finally:
        (secured.secrets_dir / "STREAM_APP_KAFKA__SASL_PASSWORD").write_text(KAFKA_PASSWORD)
    assert bad_kafka.returncode == 1
    assert "refused the connection" in bad_kafka.stderr
    assert "Traceback" not in bad_kafka.stderr

    for private in (
        "tls/ca.key",
        "tls/server.pem",
        "kafka/admin.password",
        "kafka/config/server.properties",  # holds the broker's own SCRAM password
        "cassandra/admin.password",
    ):
        assert stat.S_IMODE((secured.home / private).stat().st_mode) == 0o600, private


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp{,6} shows them) listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def test_every_client_works_through_them(secured: Secured, tmp_path: Path) -> None:
    init = secured.run("init")
    assert init.returncode == 0, init.stderr
    boot = secured.run("bootstrap", "--days", "0.5")
    assert boot.returncode == 0, boot.stderr
    assert json.loads(boot.stdout.splitlines()[-1])["role"] == "champion"

    log = tmp_path / "worker.log"
    with log.open("wb") as handle:
        worker = subprocess.Popen([*CLI, "worker"], env={**os.environ, **secured.env},
                                  stdout=handle, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_for(lambda: "client-events consumer assigned" in log.read_text(), 90, "the worker")
        # the web port (metrics, dashboard) is bound to the loopback address only
        assert listening_addresses(secured.settings.worker.web_port) == {"0100007F"}

        started = int(time.time() * 1000)
        run = secured.run("simulate", "--rate", "40", "--duration", "5", "--invalid-rate",
                          "0.05", "--no-wait-labels", "--run-id", "sec")  # fmt: skip
        assert run.returncode == 0, run.stderr
        simulated = json.loads(run.stdout)
        invalid = sum(simulated["invalid"].values())
        valid = simulated["client_events"] - invalid
        assert invalid > 0
        topics = secured.settings.kafka.topics
        predictions = consume_all(secured.settings, topics.predictions, valid, timeout_s=90)
        predicted = {json.loads(m.value())["event_id"] for m in predictions}
        assert len(predicted) == valid
        dead = consume_all(secured.settings, topics.dead_letter, invalid, timeout_s=30)
        assert len(dead) == invalid

        status = secured.run("status")
        assert status.returncode == 0, status.stderr
        assert "champion" in status.stdout
        tail = secured.run("tail", "predictions", "--from-beginning", "--max", "3")
        assert tail.returncode == 0, tail.stderr
        assert len(tail.stdout.splitlines()) == 3

        ended = int(time.time() * 1000)
        replay = secured.run("replay", "--from", str(started - 5000), "--to", str(ended),
                             "--model", "champion", "--out", str(tmp_path), "--json")  # fmt: skip
        assert replay.returncode == 0, replay.stderr
        report = json.loads(replay.stdout)
        assert report["events"]["scored"] == valid
        (version,) = report["versions"]
        assert version["production"]["identical"] == valid
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0, log.read_text()[-3000:]
        secured.outputs.append(log.read_text())

    # without a worker, `status` asks Kafka (groups' lag) and Cassandra (model roles) itself
    offline = secured.run("status")
    assert "no worker answers" in offline.stdout, offline.stderr
    assert "scoring   lag 0 on client-events" in offline.stdout
    assert "champion" in offline.stdout

    bench = secured.run("bench", "e2e", "--events", "600", "--naive-events", "60",
                        "--half-load-seconds", "2")  # fmt: skip
    assert bench.returncode == 0, bench.stderr[-3000:]
    assert json.loads(bench.stdout)["lost"] == 0


def test_a_changed_password_takes_effect_at_the_next_start(secured: Secured) -> None:
    """`services up` sets the clients' SCRAM user and Cassandra role from the settings."""
    password_file = secured.secrets_dir / "STREAM_APP_KAFKA__SASL_PASSWORD"
    assert secured.run("services", "down", "kafka").returncode == 0
    password_file.write_text(ROTATED_PASSWORD)
    try:
        up = secured.run("services", "up", "kafka")
        assert up.returncode == 0, up.stderr + up.stdout
        kafka = secured.settings.kafka
        reach(kafka.model_copy(update={"sasl_password": SecretStr(ROTATED_PASSWORD)}), 10)
        with pytest.raises(ConfigurationError, match="invalid credentials"):
            reach(kafka, timeout_s=10)
    finally:
        password_file.write_text(KAFKA_PASSWORD)

    cassandra = secured.settings.cassandra
    rotated = cassandra.model_copy(update={"password": SecretStr(ROTATED_PASSWORD)})
    create_client_role(rotated, secured.admin_password("cassandra"))
    deadline = time.monotonic() + 10  # the node caches credentials for 2 s
    while _login(cassandra, "stream_app", CASSANDRA_PASSWORD) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _login(cassandra, "stream_app", CASSANDRA_PASSWORD) is None
    assert _login(cassandra, "stream_app", ROTATED_PASSWORD) is not None


def test_no_password_shows_in_any_output_or_log(secured: Secured) -> None:
    config = secured.run("config")
    assert config.returncode == 0, config.stderr
    shown = json.loads(config.stdout)
    assert shown["kafka"]["sasl_password"] == "**********"
    assert shown["cassandra"]["password"] == "**********"

    secrets = {
        KAFKA_PASSWORD,
        CASSANDRA_PASSWORD,
        ROTATED_PASSWORD,
        secured.admin_password("kafka"),
        secured.admin_password("cassandra"),
    }
    texts = {f"output {i}": text for i, text in enumerate(secured.outputs)}
    assert len(texts) >= 10  # every command this module ran
    for service, logs in (("kafka", "logs"), ("cassandra", "logs")):
        for path in sorted((secured.home / service / logs).iterdir()):
            texts[str(path)] = path.read_text(errors="replace")
    for where, text in texts.items():
        for secret in secrets:
            assert secret not in text, f"a password shows in {where}"
