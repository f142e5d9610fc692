"""A single Apache Cassandra 5.0 node run from the ``cassandra-all`` jar."""

from __future__ import annotations

from pathlib import Path

from stream_app.services.jars import find_jar
from stream_app.services.process import ServiceSpec
from stream_app.settings import Settings

READY_LINE = "Startup complete"

# From Cassandra's conf/jvm17-server.options: without them the JVM dies at start on Java 17.
_JAVA17_FLAGS = [
    *(
        f"--add-exports={module}=ALL-UNNAMED"
        for module in (
            "java.base/jdk.internal.misc",
            "java.management.rmi/com.sun.jmx.remote.internal.rmi",
            "java.management/com.sun.jmx.remote.security",
            "java.rmi/sun.rmi.registry",
            "java.rmi/sun.rmi.server",
            "java.sql/java.sql",
            "java.base/java.lang.ref",
            "jdk.unsupported/sun.misc",
        )
    ),
    *(
        f"--add-opens={module}=ALL-UNNAMED"
        for module in (
            "java.base/java.lang.module",
            "java.base/jdk.internal.loader",
            "java.base/jdk.internal.ref",
            "java.base/jdk.internal.reflect",
            "java.base/jdk.internal.math",
            "java.base/jdk.internal.module",
            "java.base/jdk.internal.util.jar",
            "java.base/sun.nio.ch",
            "java.base/java.io",
            "java.base/java.lang.reflect",
            "java.base/java.lang",
            "java.base/java.util",
            "java.base/java.nio",
            "jdk.management/com.sun.management.internal",
        )
    ),
]


def _yaml(settings: Settings) -> str:
    storage_port = settings.services.cassandra_storage_port
    return f"""\
cluster_name: stream-app
num_tokens: 1
initial_token: 0
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "127.0.0.1:{storage_port}"
listen_address: 127.0.0.1
rpc_address: 127.0.0.1
storage_port: {storage_port}
start_native_transport: true
native_transport_port: {settings.cassandra.port}
commitlog_sync: periodic
commitlog_sync_period: 10000ms
auto_snapshot: false
authenticator: AllowAllAuthenticator
authorizer: AllowAllAuthorizer
concurrent_compactors: 1
# stream-app writes predictions in unlogged batches of a few dozen rows: do not warn on each
batch_size_warn_threshold: 64KiB
batch_size_fail_threshold: 640KiB
unlogged_batch_across_partitions_warn_threshold: 100
"""


_LOGBACK = """\
<configuration scan="false">
  <appender name="SYSTEMLOG" class="ch.qos.logback.core.rolling.RollingFileAppender">
    <file>${cassandra.logdir}/system.log</file>
    <rollingPolicy class="ch.qos.logback.core.rolling.SizeAndTimeBasedRollingPolicy">
      <fileNamePattern>${cassandra.logdir}/system.log.%d{yyyy-MM-dd}.%i.zip</fileNamePattern>
      <maxFileSize>50MB</maxFileSize>
      <maxHistory>3</maxHistory>
      <totalSizeCap>200MB</totalSizeCap>
    </rollingPolicy>
    <encoder>
      <pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern>
    </encoder>
  </appender>
  <root level="INFO">
    <appender-ref ref="SYSTEMLOG" />
  </root>
</configuration>
"""


def cassandra_spec(settings: Settings, lib_dir: Path, java: Path) -> ServiceSpec:
    """Describe the node's process; its ``prepare`` writes the configuration."""
    root = (settings.services.home / "cassandra").resolve()
    config_dir, data_dir, log_dir = root / "config", root / "data", root / "logs"
    yaml_file = config_dir / "cassandra.yaml"
    logback = config_dir / "logback.xml"

    # The agent Cassandra needs to measure objects; checked for real in prepare().
    jamm = next(iter(sorted(lib_dir.glob("jamm-*.jar"))), lib_dir / "jamm.jar")

    def prepare() -> None:
        find_jar(lib_dir, "jamm-")
        for folder in (config_dir, data_dir, log_dir):
            folder.mkdir(parents=True, exist_ok=True)
        yaml_file.write_text(_yaml(settings))
        logback.write_text(_LOGBACK)

    heap = settings.services.cassandra_heap_mb
    command = [
        str(java),
        f"-Xms{heap}m",
        f"-Xmx{heap}m",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=300",
        "-Xss256k",
        "-XX:+ExitOnOutOfMemoryError",
        f"-javaagent:{jamm}",
        *_JAVA17_FLAGS,
        "-Djdk.attach.allowAttachSelf=true",
        "-Dio.netty.tryReflectionSetAccessible=true",
        "-Djava.net.preferIPv4Stack=true",
        "-Dchronicle.analytics.disable=true",
        f"-Dcassandra.config={yaml_file.as_uri()}",
        f"-Dcassandra.storagedir={data_dir}",
        f"-Dcassandra.logdir={log_dir}",
        f"-Dlogback.configurationFile={logback}",
        "-Dcassandra-foreground=yes",
        "-Dcassandra.skip_wait_for_gossip_to_settle=0",
        "-Dstream-app.service=cassandra",
        "-cp",
        f"{config_dir}:{lib_dir}/*",
        "org.apache.cassandra.service.CassandraDaemon",
    ]
    return ServiceSpec(
        name="cassandra",
        port=settings.cassandra.port,
        command=command,
        run_dir=(settings.services.home / "run").resolve(),
        console_log=log_dir / "console.log",
        server_log=log_dir / "system.log",
        ready_line=READY_LINE,
        probe=lambda: probe_cassandra(settings),
        prepare=prepare,
    )


def probe_cassandra(settings: Settings) -> None:
    """``SELECT release_version FROM system.local`` through the project's own session."""
    from stream_app.cassandra_session import open_cluster

    cluster = open_cluster(settings.cassandra, connect_timeout_s=5.0)
    try:
        session = cluster.connect()
        session.execute("SELECT release_version FROM system.local", timeout=5.0).one()
    finally:
        cluster.shutdown()
