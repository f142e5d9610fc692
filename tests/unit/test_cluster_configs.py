"""The local cluster's per-node configurations (`services.cluster`), without starting any."""

from __future__ import annotations

import itertools
import shlex
from pathlib import Path

import pytest
from pydantic import SecretStr

from stream_app.errors import ConfigurationError
from stream_app.services.cassandra_server import (
    _rackdc,
    _yaml,
    cassandra_nodes,
    cassandra_specs,
)
from stream_app.services.control import start_waves
from stream_app.services.kafka_server import _properties, brokers, kafka_specs
from stream_app.settings import Settings, load_settings

CLUSTER_ENV = Path(__file__).parents[2] / "deploy" / "cluster.env"


def cluster_env() -> dict[str, str]:
    """The variables of deploy/cluster.env, as `set -a; . deploy/cluster.env` sets them."""
    env = {}
    for line in CLUSTER_ENV.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            (env[name],) = shlex.split(value)
    return env


@pytest.fixture
def cluster(tmp_path: Path) -> Settings:
    """The settings of deploy/cluster.env, with a home folder of the test's own."""
    env = {**cluster_env(), "STREAM_APP_SERVICES__HOME": str(tmp_path / "home")}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        return load_settings()


def lines(text: str) -> set[str]:
    return set(text.splitlines())


def test_the_env_file_asks_for_replication_everywhere(cluster: Settings) -> None:
    assert cluster.services.cluster
    assert cluster.kafka.replication_factor == 3
    assert cluster.kafka.min_insync_replicas == 2
    assert cluster.cassandra.replication_strategy == "NetworkTopologyStrategy"
    assert cluster.cassandra.replication_factor == 3
    assert cluster.cassandra.consistency == "LOCAL_QUORUM"
    assert cluster.cassandra.contact_points == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]


def test_three_brokers_with_ports_of_their_own(cluster: Settings, tmp_path: Path) -> None:
    nodes = brokers(cluster)
    assert [(n.name, n.node_id, n.host, n.port, n.controller_port) for n in nodes] == [
        ("kafka-1", 1, "127.0.0.1", 19092, 19192),
        ("kafka-2", 2, "127.0.0.1", 19093, 19193),
        ("kafka-3", 3, "127.0.0.1", 19094, 19194),
    ]
    assert [n.root for n in nodes] == [
        (tmp_path / "home" / "cluster" / f"kafka-{n}").resolve() for n in (1, 2, 3)
    ]


def test_a_brokers_properties_name_the_whole_quorum(cluster: Settings) -> None:
    nodes = brokers(cluster)
    second = lines(_properties(cluster, Path("/data"), None, nodes[1], nodes))
    assert {
        "process.roles=broker,controller",
        "node.id=2",
        "controller.quorum.voters=1@127.0.0.1:19192,2@127.0.0.1:19193,3@127.0.0.1:19194",
        "listeners=PLAINTEXT://127.0.0.1:19093,CONTROLLER://127.0.0.1:19193",
        "advertised.listeners=PLAINTEXT://127.0.0.1:19093",
        "log.dirs=/data",
        "default.replication.factor=3",
        "min.insync.replicas=2",
        "offsets.topic.replication.factor=3",
        "transaction.state.log.replication.factor=3",
        "transaction.state.log.min.isr=2",
        "unclean.leader.election.enable=false",
    } <= second


def test_the_single_broker_is_unchanged() -> None:
    single = lines(_properties(Settings(), Path("/data"), None))
    assert {
        "node.id=1",
        "controller.quorum.voters=1@127.0.0.1:9093",
        "listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093",
        "offsets.topic.replication.factor=1",
        "transaction.state.log.min.isr=1",
    } <= single
    assert not any(line.startswith("min.insync.replicas") for line in single)


def test_each_broker_is_a_process_of_its_own(cluster: Settings, tmp_path: Path) -> None:
    specs = kafka_specs(cluster, tmp_path / "lib", Path("java"))
    run_dir = (tmp_path / "home" / "cluster" / "run").resolve()
    assert [(s.name, s.host, s.port, s.pid_file) for s in specs] == [
        (f"kafka-{n}", "127.0.0.1", 19091 + n, run_dir / f"kafka-{n}.pid") for n in (1, 2, 3)
    ]
    assert [s.command.count(f"-Dstream-app.service={s.name}") for s in specs] == [1, 1, 1]
    assert all("-Xmx512m" in s.command for s in specs)


def test_brokers_off_loopback_or_on_one_port_are_refused(cluster: Settings) -> None:
    remote = cluster.model_copy(
        update={"kafka": cluster.kafka.model_copy(update={"bootstrap_servers": "10.0.0.5:9092"})}
    )
    with pytest.raises(ConfigurationError, match="loopback"):
        brokers(remote)
    colliding = cluster.model_copy(
        update={"services": cluster.services.model_copy(update={"kafka_controller_port": 19093})}
    )
    with pytest.raises(ConfigurationError, match="distinct ports"):
        brokers(colliding)


def test_a_secured_cluster_is_refused_not_half_made(cluster: Settings, tmp_path: Path) -> None:
    secured_kafka = cluster.kafka.model_copy(
        update={
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": "app",
            "sasl_password": SecretStr("pw"),
            "ssl_ca_file": tmp_path / "ca.pem",
        }
    )
    with pytest.raises(ConfigurationError, match="PLAINTEXT only"):
        kafka_specs(cluster.model_copy(update={"kafka": secured_kafka}), tmp_path, Path("java"))
    secured_cassandra = cluster.cassandra.model_copy(
        update={"username": "app", "password": SecretStr("pw")}
    )
    with pytest.raises(ConfigurationError, match="without passwords and TLS"):
        cassandra_specs(
            cluster.model_copy(update={"cassandra": secured_cassandra}), tmp_path, Path("java")
        )


def test_three_cassandra_nodes_on_addresses_of_their_own(cluster: Settings, tmp_path: Path) -> None:
    nodes = cassandra_nodes(cluster)
    assert [(n.name, n.address, n.jmx_port, n.seeds) for n in nodes] == [
        ("cassandra-1", "127.0.0.2", 17199, ("127.0.0.2",)),
        ("cassandra-2", "127.0.0.3", 17200, ("127.0.0.2",)),
        ("cassandra-3", "127.0.0.4", 17201, ("127.0.0.2",)),
    ]
    tokens = [n.token for n in nodes]
    assert tokens == sorted(set(tokens))
    assert tokens[0] == -(2**63)
    gaps = {b - a for a, b in itertools.pairwise(tokens)}
    assert gaps == {2**64 // 3}  # spread evenly: each node owns a third of the ring
    assert nodes[2].root == (tmp_path / "home" / "cluster" / "cassandra-3").resolve()


def test_a_nodes_yaml_names_its_address_the_seed_and_the_datacenter(cluster: Settings) -> None:
    node = cassandra_nodes(cluster)[1]
    yaml = _yaml(cluster, None, node)
    assert {
        "cluster_name: stream-app-cluster",
        "endpoint_snitch: GossipingPropertyFileSnitch",
        '      - seeds: "127.0.0.2:7000"',
        "listen_address: 127.0.0.3",
        "rpc_address: 127.0.0.3",
        "storage_port: 7000",
        "native_transport_port: 9042",
        f"initial_token: {node.token}",
        "num_tokens: 1",
    } <= lines(yaml)
    assert lines(_rackdc(cluster)) == {"dc=datacenter1", "rack=rack1"}
    other_dc = cluster.model_copy(
        update={"cassandra": cluster.cassandra.model_copy(update={"local_dc": "dc-east"})}
    )
    assert "dc=dc-east" in lines(_rackdc(other_dc))


def test_the_single_node_yaml_is_unchanged() -> None:
    assert {
        "cluster_name: stream-app",
        "endpoint_snitch: SimpleSnitch",
        '      - seeds: "127.0.0.1:7000"',
        "listen_address: 127.0.0.1",
        "initial_token: 0",
    } <= lines(_yaml(Settings()))


def test_each_node_has_its_own_jmx_port_and_pid_file(cluster: Settings, tmp_path: Path) -> None:
    specs = cassandra_specs(cluster, tmp_path / "lib", Path("java"))
    assert [(s.name, s.host, s.port) for s in specs] == [
        ("cassandra-1", "127.0.0.2", 9042),
        ("cassandra-2", "127.0.0.3", 9042),
        ("cassandra-3", "127.0.0.4", 9042),
    ]
    assert len({s.pid_file for s in specs}) == 3
    assert "-Dcassandra.jmx.local.port=17200" in specs[1].command
    single = cassandra_specs(Settings(), tmp_path / "lib", Path("java"))
    assert not any("jmx.local.port" in part for part in single[0].command)


@pytest.mark.parametrize(
    ("points", "message"),
    [
        (["127.0.0.2", "10.1.1.1", "127.0.0.4"], "loopback"),
        (["127.0.0.2", "localhost"], "loopback"),
        (["127.0.0.2", "127.0.0.2", "127.0.0.4"], "repeats"),
    ],
)
def test_nodes_off_loopback_or_sharing_an_address_are_refused(
    cluster: Settings, points: list[str], message: str
) -> None:
    bad = cluster.model_copy(
        update={"cassandra": cluster.cassandra.model_copy(update={"contact_points": points})}
    )
    with pytest.raises(ConfigurationError, match=message):
        cassandra_nodes(bad)


def test_brokers_start_together_and_cassandra_nodes_one_by_one(
    cluster: Settings, tmp_path: Path
) -> None:
    specs = {
        "kafka": kafka_specs(cluster, tmp_path, Path("java")),
        "cassandra": cassandra_specs(cluster, tmp_path, Path("java")),
    }
    waves = [[spec.name for spec in wave] for wave in start_waves(specs)]
    assert waves == [
        ["kafka-1", "kafka-2", "kafka-3", "cassandra-1"],
        ["cassandra-2"],
        ["cassandra-3"],
    ]
    single = {
        "kafka": kafka_specs(Settings(), tmp_path, Path("java")),
        "cassandra": cassandra_specs(Settings(), tmp_path, Path("java")),
    }
    assert [[spec.name for spec in wave] for wave in start_waves(single)] == [
        ["kafka", "cassandra"]
    ]


def test_settings_the_cluster_cannot_run_are_refused_before_any_download(
    cluster: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stream_app.services import control

    def no_download(service: str, home: Path) -> tuple[Path, bool]:
        raise AssertionError(f"{service}'s jars fetched for settings that cannot run")

    monkeypatch.setattr(control, "ensure_jars", no_download)
    monkeypatch.setattr(control, "find_java", lambda java_home: Path("java"))
    remote = cluster.model_copy(
        update={"kafka": cluster.kafka.model_copy(update={"bootstrap_servers": "db.example:9092"})}
    )
    with pytest.raises(ConfigurationError, match="loopback"):
        control.up(remote, ["kafka"], log=lambda line: None)


def test_more_replicas_than_the_cluster_has_nodes_are_refused(
    cluster: Settings, tmp_path: Path
) -> None:
    two_brokers = cluster.kafka.model_copy(
        update={"bootstrap_servers": "127.0.0.1:19092,127.0.0.1:19093"}
    )
    with pytest.raises(ConfigurationError, match="replication_factor is 3 and the cluster has 2"):
        kafka_specs(cluster.model_copy(update={"kafka": two_brokers}), tmp_path, Path("java"))
    two_nodes = cluster.cassandra.model_copy(update={"contact_points": ["127.0.0.2", "127.0.0.3"]})
    with pytest.raises(ConfigurationError, match="3 replicas and the cluster has 2 nodes"):
        cassandra_specs(cluster.model_copy(update={"cassandra": two_nodes}), tmp_path, Path("java"))
