"""A single-node Apache Kafka 4 broker in KRaft mode (broker and controller in one JVM)."""

from __future__ import annotations

import base64
import subprocess
import uuid
from pathlib import Path

from stream_app.errors import ServiceError
from stream_app.services.process import ServiceSpec
from stream_app.settings import Settings

READY_LINE = "Kafka Server started"


def _properties(settings: Settings, data_dir: Path) -> str:
    port = local_port(settings)
    controller = settings.services.kafka_controller_port
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{controller}",
            f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            f"log.dirs={data_dir}",
            # one node: every internal topic has a single replica
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "transaction.state.log.num.partitions=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
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


def _cluster_id(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    path.write_text(cluster_id + "\n")
    return cluster_id


def kafka_spec(settings: Settings, lib_dir: Path, java: Path) -> ServiceSpec:
    """Describe the broker's process; its ``prepare`` writes the configuration and formats
    the storage the first time."""
    root = (settings.services.home / "kafka").resolve()
    config_dir, data_dir, log_dir = root / "config", root / "data", root / "logs"
    server_properties = config_dir / "server.properties"
    log4j = config_dir / "log4j2.yaml"
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
        "-Dstream-app.service=kafka",
        "-cp",
        f"{lib_dir}/*",
    ]

    def prepare() -> None:
        for folder in (config_dir, data_dir, log_dir):
            folder.mkdir(parents=True, exist_ok=True)
        server_properties.write_text(_properties(settings, data_dir))
        log4j.write_text(_LOG4J2)
        if not (data_dir / "meta.properties").exists():
            _format_storage(java_opts, _cluster_id(root / "cluster.id"), server_properties)

    return ServiceSpec(
        name="kafka",
        port=local_port(settings),
        command=[*java_opts, "kafka.Kafka", str(server_properties)],
        run_dir=(settings.services.home / "run").resolve(),
        console_log=log_dir / "console.log",
        server_log=log_dir / "server.log",
        ready_line=READY_LINE,
        probe=lambda: probe_kafka(settings),
        prepare=prepare,
    )


def _format_storage(java_opts: list[str], cluster_id: str, server_properties: Path) -> None:
    command = [
        *java_opts,
        "kafka.tools.StorageTool",
        "format",
        "-t",
        cluster_id,
        "-c",
        str(server_properties),
        "--ignore-formatted",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ServiceError(f"formatting Kafka's storage failed:\n{result.stdout}{result.stderr}")


def probe_kafka(settings: Settings) -> None:
    """One metadata request through the project's own client configuration."""
    from confluent_kafka.admin import AdminClient

    # log_level 0: a broker still starting is expected here, not worth librdkafka's stderr
    admin = AdminClient(
        {**settings.kafka.client_config(), "socket.timeout.ms": 5000, "log_level": 0}
    )
    admin.list_topics(timeout=5)
