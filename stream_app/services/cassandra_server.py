"""Apache Cassandra 5.0 nodes run from the ``cassandra-all`` jar: one node by default, or with
``services.cluster`` one per ``cassandra.contact_points`` address (see :func:`cassandra_nodes`).

When the settings name a user (``cassandra.username``), the node runs PasswordAuthenticator.
At its first start the project takes over from Cassandra's default superuser
(``cassandra``/``cassandra``): it creates its own administrator with a random password kept in
``<home>/cassandra/admin.password``, then strips the default role of login and superuser.
At every start the administrator creates the clients' role, or sets its password.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from stream_app.errors import ConfigurationError, ServiceError
from stream_app.services.admin_secret import admin_password
from stream_app.services.jars import find_jar
from stream_app.services.process import ServiceSpec
from stream_app.services.tls import TlsFiles, local_server_files
from stream_app.settings import CassandraSettings, Settings

READY_LINE = "Startup complete"
ADMIN_ROLE = "stream_app_admin"
CA_VARIABLE = "STREAM_APP_CASSANDRA__SSL_CA_FILE"
DEFAULT_SUPERUSER = "cassandra"  # its password is "cassandra" until the project takes over

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


# A fresh node waits this long for the ring's gossip before it joins (Cassandra's default is
# 30 s per node). The nodes start one after another on one machine, so a few seconds suffice.
RING_DELAY_MS = 5000


@dataclass(frozen=True)
class CassandraNode:
    """One local Cassandra node: the address it listens on, its token, its folder."""

    name: str
    index: int
    address: str
    token: int
    seeds: tuple[str, ...]
    jmx_port: int | None
    root: Path

    @property
    def in_cluster(self) -> bool:
        return self.jmx_port is not None


def cassandra_nodes(settings: Settings) -> list[CassandraNode]:
    """The nodes ``services`` runs: one on 127.0.0.1, or with ``services.cluster`` one per
    contact point, each on its own loopback address (Cassandra's storage port is one for the
    whole cluster). Tokens are spread evenly, one per node; the first node is the seed."""
    services = settings.services
    if not services.cluster:
        root = (services.home / "cassandra").resolve()
        return [CassandraNode("cassandra", 0, "127.0.0.1", 0, ("127.0.0.1",), None, root)]
    addresses = settings.cassandra.contact_points
    for address in addresses:
        try:
            loopback = ipaddress.ip_address(address)
        except ValueError:
            loopback = None
        if loopback is None or loopback.version != 4 or not loopback.is_loopback:
            raise ConfigurationError(
                f"cassandra.contact_points names {address!r}; the local cluster's nodes run on "
                "loopback IPv4 addresses such as 127.0.0.2, one address per node"
            )
    if len(set(addresses)) != len(addresses):
        raise ConfigurationError(
            "the local cluster's nodes share one storage port, so each needs its own address: "
            f"cassandra.contact_points repeats one ({addresses})"
        )
    step = 2**64 // len(addresses)
    return [
        CassandraNode(
            name=f"cassandra-{index + 1}",
            index=index,
            address=address,
            token=-(2**63) + index * step,
            seeds=(addresses[0],),
            jmx_port=services.cassandra_jmx_port + index,
            root=(services.home / "cluster" / f"cassandra-{index + 1}").resolve(),
        )
        for index, address in enumerate(addresses)
    ]


def wants_authentication(cassandra: CassandraSettings) -> bool:
    """Whether the clients log in, so the node must run PasswordAuthenticator."""
    if cassandra.username is None:
        return False
    if cassandra.password is None:
        raise ConfigurationError(
            "cassandra.username is set without a password: set STREAM_APP_CASSANDRA__PASSWORD "
            "(or its file in STREAM_APP_SECRETS_DIR)"
        )
    if cassandra.username in (ADMIN_ROLE, DEFAULT_SUPERUSER):
        raise ConfigurationError(f"{cassandra.username} is the node's own role; pick another")
    return True


def _client_encryption(tls: TlsFiles | None) -> str:
    if tls is None:
        return ""
    return f"""\
client_encryption_options:
  enabled: true
  optional: false
  ssl_context_factory:
    class_name: org.apache.cassandra.security.PEMBasedSslContextFactory
  keystore: {tls.server}
  require_client_auth: false
"""


def _yaml(
    settings: Settings, tls: TlsFiles | None = None, node: CassandraNode | None = None
) -> str:
    """``cassandra.yaml`` of ``node`` (default: the single node)."""
    node = node or cassandra_nodes(settings)[0]
    storage_port = settings.services.cassandra_storage_port
    authenticator = (
        "PasswordAuthenticator"
        if wants_authentication(settings.cassandra)
        else "AllowAllAuthenticator"
    )
    seeds = ",".join(f"{seed}:{storage_port}" for seed in node.seeds)
    # The cluster's nodes name their datacenter (cassandra-rackdc.properties), so that
    # cassandra.local_dc, NetworkTopologyStrategy and LOCAL_QUORUM all refer to it; another
    # cluster name keeps them from ever gossiping with the single node.
    name, snitch = "stream-app", "SimpleSnitch"
    if node.in_cluster:
        name, snitch = "stream-app-cluster", "GossipingPropertyFileSnitch"
    return f"""\
cluster_name: {name}
num_tokens: 1
initial_token: {node.token}
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: {snitch}
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "{seeds}"
listen_address: {node.address}
rpc_address: {node.address}
storage_port: {storage_port}
start_native_transport: true
native_transport_port: {settings.cassandra.port}
commitlog_sync: periodic
commitlog_sync_period: 10000ms
auto_snapshot: false
authenticator: {authenticator}
authorizer: AllowAllAuthorizer
concurrent_compactors: 1
# stream-app writes predictions in unlogged batches of a few dozen rows: do not warn on each
batch_size_warn_threshold: 64KiB
batch_size_fail_threshold: 640KiB
unlogged_batch_across_partitions_warn_threshold: 100
""" + _client_encryption(tls)


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


def cassandra_specs(settings: Settings, lib_dir: Path, java: Path) -> list[ServiceSpec]:
    """Every node's process (one, or the cluster's); ``services up`` starts a cluster's nodes
    one after another."""
    nodes = cassandra_nodes(settings)
    cassandra = settings.cassandra
    if len(nodes) > 1 and (wants_authentication(cassandra) or cassandra.ssl_ca_file):
        raise ConfigurationError(
            "the local Cassandra cluster runs without passwords and TLS; they are served by "
            "the single node"
        )
    replicas = max([cassandra.replication_factor, *cassandra.datacenters.values()])
    if settings.services.cluster and replicas > len(nodes):
        raise ConfigurationError(
            f"the keyspace asks for {replicas} replicas and the cluster has {len(nodes)} nodes "
            "(one per cassandra.contact_points address): no write could reach them all"
        )
    return [cassandra_spec(settings, lib_dir, java, node) for node in nodes]


def cassandra_spec(
    settings: Settings, lib_dir: Path, java: Path, node: CassandraNode | None = None
) -> ServiceSpec:
    """Describe a node's process (default: the single node); its ``prepare`` writes the
    configuration."""
    node = node or cassandra_nodes(settings)[0]
    root = node.root
    config_dir, data_dir, log_dir = root / "config", root / "data", root / "logs"
    yaml_file = config_dir / "cassandra.yaml"
    logback = config_dir / "logback.xml"

    # The agent Cassandra needs to measure objects; checked for real in prepare().
    jamm = next(iter(sorted(lib_dir.glob("jamm-*.jar"))), lib_dir / "jamm.jar")

    def prepare() -> None:
        find_jar(lib_dir, "jamm-")
        for folder in (config_dir, data_dir, log_dir):
            folder.mkdir(parents=True, exist_ok=True)
        ca_file, tls = settings.cassandra.ssl_ca_file, None
        if ca_file is not None:
            tls = local_server_files(settings.services.home, ca_file, CA_VARIABLE)
        yaml_file.write_text(_yaml(settings, tls, node))
        logback.write_text(_LOGBACK)
        if node.in_cluster:  # read from the classpath by GossipingPropertyFileSnitch
            (config_dir / "cassandra-rackdc.properties").write_text(_rackdc(settings))

    def provision() -> None:
        if wants_authentication(settings.cassandra):
            create_client_role(settings.cassandra, admin_password(root / "admin.password"))

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
        # With PasswordAuthenticator, the default role is made at once rather than after 10 s.
        "-Dcassandra.superuser_setup_delay_ms=0",
        *_cluster_flags(node),
        f"-Dstream-app.service={node.name}",
        "-cp",
        f"{config_dir}:{lib_dir}/*",
        "org.apache.cassandra.service.CassandraDaemon",
    ]
    probe = (
        (lambda: probe_node(settings, node))
        if node.in_cluster
        else (lambda: probe_cassandra(settings))
    )
    return ServiceSpec(
        name=node.name,
        port=settings.cassandra.port,
        host=node.address,
        command=command,
        run_dir=root.parent / "run",
        console_log=log_dir / "console.log",
        server_log=log_dir / "system.log",
        ready_line=READY_LINE,
        probe=probe,
        prepare=prepare,
        provision=provision,
    )


def _rackdc(settings: Settings) -> str:
    return f"dc={settings.cassandra.local_dc}\nrack=rack1\n"


def _cluster_flags(node: CassandraNode) -> list[str]:
    if node.jmx_port is None:
        return []
    return [
        f"-Dcassandra.ring_delay_ms={RING_DELAY_MS}",
        # nodetool's port, on 127.0.0.1 only (every node its own)
        f"-Dcassandra.jmx.local.port={node.jmx_port}",
    ]


def _login(cassandra: CassandraSettings, role: str, password: str) -> tuple[Any, Any] | None:
    """A (cluster, session) logged in as ``role``, or None if the node refuses the password."""
    from cassandra import AuthenticationFailed
    from cassandra.cluster import NoHostAvailable

    from stream_app.cassandra_session import open_cluster

    as_role = cassandra.model_copy(update={"username": role, "password": SecretStr(password)})
    cluster = open_cluster(as_role, connect_timeout_s=5.0)
    try:
        return cluster, cluster.connect()
    except NoHostAvailable as exc:
        cluster.shutdown()
        if any(isinstance(error, AuthenticationFailed) for error in exc.errors.values()):
            return None
        raise


def _quoted(role: str) -> str:
    return '"' + role.replace('"', '""') + '"'


def create_client_role(cassandra: CassandraSettings, admin: str) -> None:
    """Create the clients' login role, or set its password, as the project's administrator.

    At the first start only the default superuser exists: it creates the administrator and
    is then stripped of login and superuser, with a random password nobody keeps.
    """
    login = _login(cassandra, ADMIN_ROLE, admin)
    if login is None:
        default = _login(cassandra, DEFAULT_SUPERUSER, DEFAULT_SUPERUSER)
        if default is None:
            raise ConfigurationError(
                f"Cassandra refuses {ADMIN_ROLE}'s password and the default superuser: was its "
                f"data made with another home folder? ({cassandra.contact_points})"
            )
        cluster, session = default
        try:
            session.execute(
                f"CREATE ROLE IF NOT EXISTS {ADMIN_ROLE} "
                "WITH SUPERUSER = true AND LOGIN = true AND PASSWORD = %s",
                (admin,),
            )
        finally:
            cluster.shutdown()
        login = _login(cassandra, ADMIN_ROLE, admin)
        if login is None:
            raise ConfigurationError(f"Cassandra refused {ADMIN_ROLE} right after creating it")
        login[1].execute(
            f"ALTER ROLE {DEFAULT_SUPERUSER} "
            "WITH SUPERUSER = false AND LOGIN = false AND PASSWORD = %s",
            (secrets.token_urlsafe(32),),
        )
    cluster, session = login
    if not (cassandra.username and cassandra.password):
        raise ConfigurationError("the clients' Cassandra role needs a name and a password")
    role, password = _quoted(cassandra.username), cassandra.password.get_secret_value()
    try:
        session.execute(
            f"CREATE ROLE IF NOT EXISTS {role} WITH LOGIN = true AND PASSWORD = %s", (password,)
        )
        session.execute(f"ALTER ROLE {role} WITH LOGIN = true AND PASSWORD = %s", (password,))
    finally:
        cluster.shutdown()


def probe_cassandra(settings: Settings) -> None:
    """``SELECT release_version FROM system.local`` through the project's own session."""
    from stream_app.cassandra_session import open_cluster

    cluster = open_cluster(settings.cassandra, connect_timeout_s=5.0)
    try:
        session = cluster.connect()
        session.execute("SELECT release_version FROM system.local", timeout=5.0).one()
    finally:
        cluster.shutdown()


def probe_node(settings: Settings, node: CassandraNode) -> None:
    """One node of the cluster, asked alone: it has joined the ring (bootstrap complete) and
    its gossip has every node before it in the ring, so the next may join."""
    from stream_app.cassandra_session import open_cluster

    alone = settings.cassandra.model_copy(update={"contact_points": [node.address]})
    cluster = open_cluster(alone, connect_timeout_s=5.0, pinned=True)
    try:
        session = cluster.connect()
        local = session.execute("SELECT bootstrapped FROM system.local", timeout=5.0).one()
        if local is None or local.bootstrapped != "COMPLETED":
            raise ServiceError(f"{node.name} has not joined the ring yet")
        peers = session.execute("SELECT peer, tokens FROM system.peers_v2", timeout=5.0)
        joined = {str(row.peer) for row in peers if row.tokens}
        earlier = cassandra_nodes(settings)[: node.index]
        missing = [n.name for n in earlier if n.address not in joined]
        if missing:
            raise ServiceError(f"{node.name} does not see {', '.join(missing)} in its ring yet")
    finally:
        cluster.shutdown()
