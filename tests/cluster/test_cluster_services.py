"""The local replicated cluster (`services.cluster`, `make test-cluster`): three brokers and three
Cassandra nodes of this test's own (home folder, ports, addresses), provisioned by `init`, then
one Cassandra node and one broker killed while reads and writes go on.

Not in `make test`: bringing a cluster up takes minutes and about 6 GiB of memory.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from stream_app.cassandra_session import open_cluster
from stream_app.services import process
from stream_app.services.cassandra_server import _JAVA17_FLAGS, cassandra_nodes, cassandra_specs
from stream_app.services.jars import find_java, jars_ready
from stream_app.services.kafka_server import kafka_specs
from stream_app.settings import Settings, load_settings
from tests.conftest import free_port
from tests.e2e.conftest import run_cli
from tests.e2e.test_services_command import project_jvms
from tests.unit.test_cluster_configs import cluster_env

pytestmark = pytest.mark.cluster

# Loopback addresses of this test's nodes: apart from deploy/cluster.env's 127.0.0.2-4, so a
# cluster started by `make services-cluster` may run beside it.
NODE_ADDRESSES = ["127.0.3.1", "127.0.3.2", "127.0.3.3"]


def free_port_run(length: int) -> int:
    """The first of ``length`` consecutive ports that nobody listens on right now."""
    while True:
        first = free_port()
        ports = range(first, first + length)
        if first + length < 65536 and all(_free(port) for port in ports):
            return first


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass
class ClusterUnderTest:
    env: dict[str, str]
    settings: Settings
    home: Path
    up_seconds: float
    outputs: list[str] = field(default_factory=list)
    killed: list[str] = field(default_factory=list)

    def run(self, *args: str, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
        result = run_cli(*args, env=self.env, timeout=timeout)
        self.outputs.append(result.stdout + result.stderr)
        return result

    def kill(self, name: str) -> int:
        """SIGKILL one process this test's `services up` started (found by its pid file)."""
        lib = self.home / "lib"
        specs = kafka_specs(self.settings, lib, Path("java")) + cassandra_specs(
            self.settings, lib, Path("java")
        )
        (spec,) = [spec for spec in specs if spec.name == name]
        pid = process.owned_pid(spec)
        assert pid is not None, f"{name} is not running"
        os.killpg(pid, signal.SIGKILL)  # it leads its own process group (start_new_session)
        deadline = time.monotonic() + 30
        while process.owned_pid(spec) is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert process.owned_pid(spec) is None, f"{name} (pid {pid}) survived SIGKILL"
        self.killed.append(name)
        return pid

    def nodetool(self, *args: str, node: int = 0) -> str:
        """`nodetool ARGS` against one node's JMX port (the same jars, the same JVM flags)."""
        jmx = cassandra_nodes(self.settings)[node].jmx_port
        command = [
            str(find_java(None)),
            *_JAVA17_FLAGS,
            f"-Duser.home={self.home}",  # nodetool keeps its history in ~/.cassandra
            "-cp",
            f"{(self.home / 'lib' / 'cassandra').resolve()}/*",
            "org.apache.cassandra.tools.NodeTool",
            "-h",
            "127.0.0.1",
            "-p",
            str(jmx),
            *args,
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, result.stderr[-2000:] + result.stdout[-2000:]
        return result.stdout

    def ring(self, node: int = 0) -> dict[str, str]:
        """Each node's address and its status and state (UN: up and normal), as ``node`` sees."""
        states = {}
        for line in self.nodetool("status", node=node).splitlines():
            parts = line.split()
            if len(parts) > 2 and len(parts[0]) == 2 and parts[0][0] in "UD":
                states[parts[1]] = parts[0]
        return states


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterUnderTest]:
    home = tmp_path_factory.mktemp("cluster") / "home"
    home.mkdir()
    # The jars of the default home, shared rather than fetched again when they are there.
    shared = load_settings({}).services.home.resolve() / "lib"
    if all(jars_ready(shared / service) for service in ("kafka", "cassandra")):
        (home / "lib").symlink_to(shared)
    brokers = [free_port() for _ in NODE_ADDRESSES]
    env = {
        **cluster_env(),
        "STREAM_APP_SERVICES__HOME": str(home),
        "STREAM_APP_KAFKA__BOOTSTRAP_SERVERS": ",".join(f"127.0.0.1:{p}" for p in brokers),
        "STREAM_APP_SERVICES__KAFKA_CONTROLLER_PORT": str(free_port_run(len(brokers))),
        "STREAM_APP_CASSANDRA__CONTACT_POINTS": '["' + '","'.join(NODE_ADDRESSES) + '"]',
        "STREAM_APP_CASSANDRA__PORT": str(free_port()),
        "STREAM_APP_SERVICES__CASSANDRA_STORAGE_PORT": str(free_port()),
        "STREAM_APP_SERVICES__CASSANDRA_JMX_PORT": str(free_port_run(len(NODE_ADDRESSES))),
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        settings = load_settings()
    began = time.monotonic()
    up = run_cli("services", "up", env=env, timeout=1200)
    stack = ClusterUnderTest(env, settings, home, time.monotonic() - began, [up.stdout])
    print(f"\n`services up` of the cluster: {stack.up_seconds:.1f} s\n{up.stdout}")
    try:
        assert up.returncode == 0, up.stderr + up.stdout
        began = time.monotonic()
        init = stack.run("init", timeout=600)
        print(f"`init` on the cluster: {time.monotonic() - began:.1f} s")
        assert init.returncode == 0, init.stderr + init.stdout
        yield stack
    finally:
        down = run_cli("services", "down", env=env, timeout=600)
        print(down.stdout, down.stderr)
        assert project_jvms(home) == []


def test_six_processes_come_up_and_answer(cluster: ClusterUnderTest) -> None:
    up = cluster.outputs[0]
    for name in ("kafka-1", "kafka-2", "kafka-3", "cassandra-1", "cassandra-2", "cassandra-3"):
        assert f"{name}: ready in" in up
    # Cassandra's nodes joined one after another: each started once the one before was ready.
    assert up.index("cassandra-1: ready in") < up.index("cassandra-2: started")
    assert up.index("cassandra-2: ready in") < up.index("cassandra-3: started")
    assert len(project_jvms(cluster.home)) == 6
    status = cluster.run("services", "status")
    assert status.returncode == 0, status.stdout
    assert status.stdout.count("ready True") == 6


def test_three_brokers_and_topics_replicated_three_times(cluster: ClusterUnderTest) -> None:
    from confluent_kafka.admin import AdminClient, ConfigResource

    admin = AdminClient(cluster.settings.kafka.client_config())
    metadata = admin.list_topics(timeout=30)
    assert sorted(metadata.brokers) == [1, 2, 3]
    for name in cluster.settings.kafka.topics.all():
        partitions = metadata.topics[name].partitions
        assert len(partitions) == cluster.settings.kafka.partitions
        assert all(sorted(p.replicas) == [1, 2, 3] for p in partitions.values()), name
        assert all(sorted(p.isrs) == [1, 2, 3] for p in partitions.values()), name
    resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in metadata.topics]
    for resource, future in admin.describe_configs(resources).items():
        if not resource.name.startswith("__"):
            assert future.result(timeout=30)["min.insync.replicas"].value == "2", resource.name


def test_init_reports_topics_replicated_otherwise_than_the_settings(
    cluster: ClusterUnderTest,
) -> None:
    fewer = run_cli(
        "init",
        env={**cluster.env, "STREAM_APP_KAFKA__REPLICATION_FACTOR": "2"},
        timeout=600,
    )
    assert fewer.returncode == 0, fewer.stderr
    topics = [line for line in fewer.stdout.splitlines() if line.startswith("topic ")]
    assert len(topics) == len(cluster.settings.kafka.topics.all())
    assert all("differs (3 replicas, settings ask for 2)" in line for line in topics), topics


def test_the_keyspace_is_replicated_three_times_in_the_datacenter(
    cluster: ClusterUnderTest,
) -> None:
    settings = cluster.settings.cassandra
    session_cluster = open_cluster(settings)
    try:
        session = session_cluster.connect()
        row = session.execute(
            "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = %s",
            (settings.keyspace,),
        ).one()
        assert row.replication == {
            "class": "org.apache.cassandra.locator.NetworkTopologyStrategy",
            "datacenter1": "3",
        }
    finally:
        session_cluster.shutdown()
    assert cluster.ring() == dict.fromkeys(NODE_ADDRESSES, "UN")
    ownership = cluster.nodetool("status", settings.keyspace)
    assert ownership.count("100.0%") == 3  # every node holds every row


def local_quorum_round_trip(settings: Settings, rows: int) -> None:
    """Write ``rows`` rows and read each back, at the settings' consistency (LOCAL_QUORUM)."""
    from cassandra import ConsistencyLevel

    cassandra = settings.cassandra
    session_cluster = open_cluster(cassandra)
    try:
        session = session_cluster.connect(cassandra.keyspace)
        profile = session_cluster.profile_manager.default
        assert profile.consistency_level == ConsistencyLevel.LOCAL_QUORUM
        session.execute("CREATE TABLE IF NOT EXISTS cluster_check (id text PRIMARY KEY, value int)")
        insert = session.prepare("INSERT INTO cluster_check (id, value) VALUES (?, ?)")
        select = session.prepare("SELECT value FROM cluster_check WHERE id = ?")
        ids = [uuid.uuid4().hex for _ in range(rows)]
        for number, row_id in enumerate(ids):
            session.execute(insert, (row_id, number))
        for number, row_id in enumerate(ids):
            assert session.execute(select, (row_id,)).one().value == number
    finally:
        session_cluster.shutdown()


def test_writes_and_reads_at_local_quorum(cluster: ClusterUnderTest) -> None:
    local_quorum_round_trip(cluster.settings, rows=100)


def test_a_cassandra_node_down_leaves_local_quorum_working(cluster: ClusterUnderTest) -> None:
    from cassandra import ConsistencyLevel, Unavailable
    from cassandra.cluster import NoHostAvailable
    from cassandra.query import SimpleStatement

    cluster.kill("cassandra-3")
    deadline = time.monotonic() + 120
    while cluster.ring().get(NODE_ADDRESSES[2]) != "DN" and time.monotonic() < deadline:
        time.sleep(2)
    assert cluster.ring() == {**dict.fromkeys(NODE_ADDRESSES[:2], "UN"), NODE_ADDRESSES[2]: "DN"}

    local_quorum_round_trip(cluster.settings, rows=100)

    # The node really is a missing replica: a write that needs all three is refused.
    cassandra = cluster.settings.cassandra
    session_cluster = open_cluster(cassandra)
    try:
        session = session_cluster.connect(cassandra.keyspace)
        everyone = SimpleStatement(
            "INSERT INTO cluster_check (id, value) VALUES ('all', 1)",
            consistency_level=ConsistencyLevel.ALL,
        )
        # (the driver tries the next host on Unavailable, and may report them all)
        with pytest.raises((Unavailable, NoHostAvailable)) as refused:
            session.execute(everyone)
        assert "Cannot achieve consistency level ALL" in str(refused.value)
    finally:
        session_cluster.shutdown()


def test_a_broker_down_leaves_produce_with_acks_all_working(cluster: ClusterUnderTest) -> None:
    kafka = cluster.settings.kafka
    topic = kafka.topics.client_events
    cluster.kill("kafka-2")

    delivered: list[Message] = []
    failed: list[Any] = []

    def on_delivery(error: KafkaError | None, message: Message) -> None:
        (failed if error is not None else delivered).append(error or message)

    producer = Producer({**kafka.client_config(), "acks": "all", "enable.idempotence": True})
    keys = [f"cluster-check-{n}" for n in range(300)]
    began = time.monotonic()
    for key in keys:
        producer.produce(topic, key=key, value=b"{}", on_delivery=on_delivery)
        producer.poll(0)
    assert producer.flush(240) == 0, "messages still waiting after 240 s"
    print(f"\n300 messages with acks=all, broker 2 down: {time.monotonic() - began:.1f} s")
    assert failed == []
    assert len(delivered) == len(keys)
    # Each partition now holds its writes on the two brokers left (min.insync.replicas=2).
    from confluent_kafka.admin import AdminClient

    metadata = AdminClient(kafka.client_config()).list_topics(topic, timeout=30)
    assert sorted(metadata.brokers) == [1, 3]
    for partition in metadata.topics[topic].partitions.values():
        assert sorted(partition.isrs) == [1, 3]
        assert partition.leader in (1, 3)

    # And every one can be read back.
    consumer = Consumer(
        {
            **kafka.client_config(),
            "group.id": f"cluster-check-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    try:
        partitions = metadata.topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        seen: set[str] = set()
        deadline = time.monotonic() + 120
        while len(seen) < len(keys) and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                seen.add((message.key() or b"").decode())
        assert seen == set(keys)
    finally:
        consumer.close()
