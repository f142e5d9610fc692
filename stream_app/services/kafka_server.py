"""Apache Kafka 4 brokers in KRaft mode, each a broker and a controller in one JVM.

One broker by default; with ``services.cluster``, one per ``kafka.bootstrap_servers`` entry,
the controllers forming one quorum of them all (see :func:`brokers`).

The broker speaks what the clients' settings ask for (:mod:`stream_app.services.kafka_security`):
``PLAINTEXT``, ``SASL_SSL`` with SCRAM, or ``SSL`` served as mutual TLS.
"""

from __future__ import annotations

import base64
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from stream_app.errors import ConfigurationError, ServiceError
from stream_app.services.admin_secret import admin_password
from stream_app.services.kafka_security import (
    CA_VARIABLE,
    BrokerSecurity,
    admin_scram,
    create_client_user,
    security_lines,
    wants_security,
)
from stream_app.services.private_files import write_private
from stream_app.services.process import ServiceSpec
from stream_app.services.tls import local_server_files
from stream_app.settings import Settings

READY_LINE = "Kafka Server started"


@dataclass(frozen=True)
class BrokerNode:
    """One local broker: its id, the addresses it listens on, its folder under the home."""

    name: str
    node_id: int
    host: str
    port: int
    controller_port: int
    root: Path

    @property
    def voter(self) -> str:
        """This node in ``controller.quorum.voters``."""
        return f"{self.node_id}@{self.host}:{self.controller_port}"


def brokers(settings: Settings) -> list[BrokerNode]:
    """The brokers ``services`` runs: one, or with ``services.cluster`` one per bootstrap server
    (node ids 1, 2, ...; broker n's controller on ``kafka_controller_port + n - 1``)."""
    services = settings.services
    if not services.cluster:
        home = (services.home / "kafka").resolve()
        port = local_port(settings)
        return [BrokerNode("kafka", 1, "127.0.0.1", port, services.kafka_controller_port, home)]
    nodes = []
    for index, (host, port) in enumerate(settings.kafka.bootstrap_list()):
        if not _loopback(host):
            raise ConfigurationError(
                f"kafka.bootstrap_servers names {host}; the local cluster's brokers run on "
                "loopback addresses (127.x.x.x)"
            )
        name = f"kafka-{index + 1}"
        root = (services.home / "cluster" / name).resolve()
        nodes.append(
            BrokerNode(name, index + 1, host, port, services.kafka_controller_port + index, root)
        )
    listeners = [(n.host, port) for n in nodes for port in (n.port, n.controller_port)]
    if len(set(listeners)) != len(listeners):
        raise ConfigurationError(
            "the cluster's brokers need distinct ports: broker n's controller listens on "
            "services.kafka_controller_port + n - 1, which collides with a bootstrap server "
            f"({settings.kafka.bootstrap_servers}, controller from "
            f"{services.kafka_controller_port})"
        )
    return nodes


def _loopback(host: str) -> bool:
    return host == "localhost" or host.startswith("127.")


def _replication_lines(settings: Settings, nodes: list[BrokerNode]) -> list[str]:
    if len(nodes) == 1:
        return [  # one node: every internal topic has a single replica
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "transaction.state.log.num.partitions=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
        ]
    # The internal topics (offsets, transactions) are replicated like the project's own, so a
    # broker down loses no committed offset; a few partitions each, as the cluster is small.
    replicas, in_sync = settings.kafka.replication_factor, settings.kafka.min_insync_replicas
    return [
        f"default.replication.factor={replicas}",
        f"min.insync.replicas={in_sync}",
        f"offsets.topic.replication.factor={replicas}",
        "offsets.topic.num.partitions=6",
        f"transaction.state.log.replication.factor={replicas}",
        f"transaction.state.log.min.isr={in_sync}",
        "transaction.state.log.num.partitions=6",
        f"share.coordinator.state.topic.replication.factor={replicas}",
        f"share.coordinator.state.topic.min.isr={in_sync}",
        "unclean.leader.election.enable=false",
        # A broker that stops heart-beating to the controllers is fenced after this, and only
        # then do its partitions' leaders (and the group and transaction coordinators it
        # held) move. Kafka's 9 s default, plus the move, outlasts the clients' 10 s session
        # timeout (worker.session_timeout_s): the groups forget their members.
        "broker.session.timeout.ms=4000",
        "broker.heartbeat.interval.ms=1000",
    ]


def _properties(
    settings: Settings,
    data_dir: Path,
    security: BrokerSecurity | None,
    node: BrokerNode | None = None,
    nodes: list[BrokerNode] | None = None,
) -> str:
    """``server.properties`` of ``node`` (default: the single broker) among ``nodes``."""
    if node is None:
        node = brokers(settings)[0]
    nodes = nodes or [node]
    return "\n".join(
        [
            "process.roles=broker,controller",
            f"node.id={node.node_id}",
            f"controller.quorum.voters={','.join(n.voter for n in nodes)}",
            *security_lines(node.host, node.port, node.controller_port, security),
            "controller.listener.names=CONTROLLER",
            f"log.dirs={data_dir}",
            *_replication_lines(settings, nodes),
            "group.initial.rebalance.delay.ms=0",
            "num.partitions=1",
            "auto.create.topics.enable=false",
            "log.retention.hours=168",
            "",
        ]
    )


_LOG4J2 = """\
Configuration:
  name: stream-app-kafka
  Appenders:
    RollingFile:
      name: server
      fileName: "${sys:kafka.logs.dir}/server.log"
      filePattern: "${sys:kafka.logs.dir}/server.log.%i"
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
      Policies:
        SizeBasedTriggeringPolicy:
          size: 50MB
      DefaultRolloverStrategy:
        max: 3
  Loggers:
    Root:
      level: INFO
      AppenderRef:
        - ref: server
    Logger:
      - name: kafka.request.logger
        level: WARN
      - name: org.apache.kafka.clients
        level: WARN
"""


def local_port(settings: Settings) -> int:
    """The client port of the local broker: the first bootstrap server, which must be local."""
    host, port = settings.kafka.bootstrap_list()[0]
    if host not in ("127.0.0.1", "localhost"):
        raise ServiceError(
            f"kafka.bootstrap_servers points at {host}; `services` only runs a broker on 127.0.0.1"
        )
    return port


def new_cluster_id() -> str:
    """A random 22-character cluster id that does not start with "-".

    StorageTool would read such an id as an option ("--cluster-id: expected one argument"),
    one format in 64. Kafka's own ``Uuid.randomUuid`` skips those ids for the same reason.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _cluster_id(path: Path) -> str:
    if path.exists():
        kept = path.read_text().strip()
        if not kept.startswith("-"):  # one that could never format is replaced
            return kept
    cluster_id = new_cluster_id()
    path.write_text(cluster_id + "\n")
    return cluster_id


def kafka_specs(settings: Settings, lib_dir: Path, java: Path) -> list[ServiceSpec]:
    """Every broker's process (one, or the cluster's), started together: a controller quorum
    of several nodes elects a leader only once most of them run."""
    nodes = brokers(settings)
    if len(nodes) > 1 and wants_security(settings.kafka):
        raise ConfigurationError(
            "the local Kafka cluster runs PLAINTEXT only; SASL_SSL and SSL are served by the "
            "single broker"
        )
    if settings.services.cluster and settings.kafka.replication_factor > len(nodes):
        raise ConfigurationError(
            f"kafka.replication_factor is {settings.kafka.replication_factor} and the cluster "
            f"has {len(nodes)} brokers (one per kafka.bootstrap_servers entry): its internal "
            "topics could never be made"
        )
    return [kafka_spec(settings, lib_dir, java, node, nodes) for node in nodes]


def kafka_spec(
    settings: Settings,
    lib_dir: Path,
    java: Path,
    node: BrokerNode | None = None,
    nodes: list[BrokerNode] | None = None,
) -> ServiceSpec:
    """Describe a broker's process (default: the single broker); its ``prepare`` writes the
    configuration and formats the storage the first time."""
    if node is None:
        node = brokers(settings)[0]
    nodes = nodes or [node]
    root = node.root
    config_dir, data_dir, log_dir = root / "config", root / "data", root / "logs"
    server_properties = config_dir / "server.properties"
    log4j = config_dir / "log4j2.yaml"
    # The brokers of one cluster share its id; the single broker keeps its own beside it.
    cluster_id_file = root / "cluster.id" if len(nodes) == 1 else root.parent / "kafka.cluster.id"
    java_opts = [
        str(java),
        f"-Xms{settings.services.kafka_heap_mb}m",
        f"-Xmx{settings.services.kafka_heap_mb}m",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:InitiatingHeapOccupancyPercent=35",
        "-XX:+ExplicitGCInvokesConcurrent",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log4j}",
        f"-Dkafka.logs.dir={log_dir}",
        f"-Dstream-app.service={node.name}",
        "-cp",
        f"{lib_dir}/*",
    ]

    admin_file = root / "admin.password"

    def security() -> BrokerSecurity | None:
        if not wants_security(settings.kafka):
            return None
        ca_file = settings.kafka.ca_location()
        if ca_file is None:  # wants_security made sure of it
            raise ConfigurationError(f"a secured broker needs {CA_VARIABLE}")
        tls = local_server_files(settings.services.home, ca_file, CA_VARIABLE)
        if settings.kafka.security_protocol == "SSL":
            return BrokerSecurity(tls, None, "SSL")
        if (data_dir / "meta.properties").exists() and not admin_file.exists():
            raise ServiceError(
                f"the broker's storage in {data_dir} was formatted without SCRAM users, so it "
                f"cannot run SASL_SSL; run it PLAINTEXT, or delete {root} (its topics are lost)"
            )
        return BrokerSecurity(tls, admin_password(admin_file))

    def prepare() -> None:
        secured = security()
        for folder in (config_dir, data_dir, log_dir):
            folder.mkdir(parents=True, exist_ok=True)
        # The properties may hold the administrator's password: owner-only.
        properties = _properties(settings, data_dir, secured, node, nodes)
        write_private(server_properties, properties.encode())
        log4j.write_text(_LOG4J2)
        if not (data_dir / "meta.properties").exists():
            scram = [] if secured is None else admin_scram(secured)  # none for SSL
            _format_storage(java_opts, _cluster_id(cluster_id_file), server_properties, scram)

    def provision() -> None:
        if wants_security(settings.kafka) and settings.kafka.security_protocol == "SASL_SSL":
            create_client_user(settings.kafka, admin_password(admin_file))

    # One node of a cluster is probed alone: the others answering proves nothing about it.
    alone = settings.kafka.model_copy(update={"bootstrap_servers": f"{node.host}:{node.port}"})
    return ServiceSpec(
        name=node.name,
        port=node.port,
        host=node.host,
        command=[*java_opts, "kafka.Kafka", str(server_properties)],
        run_dir=root.parent / "run",
        console_log=log_dir / "console.log",
        server_log=log_dir / "server.log",
        ready_line=READY_LINE,
        probe=lambda: probe_kafka(settings.model_copy(update={"kafka": alone}), node.node_id),
        prepare=prepare,
        provision=provision,
    )


def _format_storage(
    java_opts: list[str], cluster_id: str, server_properties: Path, scram: list[str]
) -> None:
    command = [
        *java_opts,
        "kafka.tools.StorageTool",
        "format",
        "-t",
        cluster_id,
        "-c",
        str(server_properties),
        "--ignore-formatted",
        *(argument for user in scram for argument in ("--add-scram", user)),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = result.stdout + result.stderr
        for user in scram:  # never print a password
            output = output.replace(user, "<scram user>")
        raise ServiceError(f"formatting Kafka's storage failed:\n{output}")


def probe_kafka(settings: Settings, node_id: int = 1) -> None:
    """One metadata request through the project's own client configuration; the broker must
    list itself (a broker of a cluster answers before the controllers have registered it)."""
    from stream_app.kafka.admin import reach

    _, metadata = reach(settings.kafka, timeout_s=5, extra={"socket.timeout.ms": 5000})
    if node_id not in metadata.brokers:
        listed = sorted(metadata.brokers)
        raise ServiceError(f"broker {node_id} is not yet registered (metadata lists {listed})")
