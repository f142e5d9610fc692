"""Connections to Cassandra, configured in one place for every client of the project."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager

from cassandra import ConsistencyLevel
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.policies import (
    DCAwareRoundRobinPolicy,
    ExponentialReconnectionPolicy,
    LoadBalancingPolicy,
    WhiteListRoundRobinPolicy,
)
from cassandra.query import tuple_factory

from stream_app.settings import CassandraSettings

HOT_PATH = "hot-path"  # execution profile returning rows as tuples


def open_cluster(
    settings: CassandraSettings, connect_timeout_s: float = 10.0, pinned: bool = False
) -> Cluster:
    """A ``cassandra.cluster.Cluster`` for the configured nodes (not yet connected).

    Protocol v4 and the local datacenter are pinned so the driver skips version probing.
    Every request runs at ``settings.consistency``. ``pinned`` talks to the contact points
    only, never to the peers they announce (a probe of one node of a cluster).
    """
    auth = None
    if settings.username:
        password = settings.password.get_secret_value() if settings.password else ""
        auth = PlainTextAuthProvider(username=settings.username, password=password)
    balancing: LoadBalancingPolicy = DCAwareRoundRobinPolicy(local_dc=settings.local_dc)
    if pinned:
        balancing = WhiteListRoundRobinPolicy(settings.contact_points)
    consistency = ConsistencyLevel.name_to_value[settings.consistency]
    profile = ExecutionProfile(
        load_balancing_policy=balancing,
        request_timeout=settings.request_timeout_s,
        consistency_level=consistency,
    )
    # The hot path reads rows as plain tuples: the default named-tuple factory builds a new
    # class for every result, which costs more than the read itself.
    hot = ExecutionProfile(
        load_balancing_policy=balancing,
        request_timeout=settings.request_timeout_s,
        consistency_level=consistency,
        row_factory=tuple_factory,
    )
    tls = None
    if settings.ssl_ca_file is not None:
        # The node's certificate must chain to this CA and name the address we dial.
        tls = ssl.create_default_context(cafile=str(settings.ssl_ca_file))
    return Cluster(
        ssl_context=tls,
        contact_points=settings.contact_points,
        port=settings.port,
        protocol_version=4,
        auth_provider=auth,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile, HOT_PATH: hot},
        connect_timeout=connect_timeout_s,
        control_connection_timeout=connect_timeout_s,
        # Requests are pipelined on few connections: Nagle's algorithm would hold a request
        # back until the previous one is acknowledged (tens of ms with delayed ACKs).
        sockopts=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        # After an outage, try again soon: the worker is paused until Cassandra is back.
        reconnection_policy=ExponentialReconnectionPolicy(base_delay=0.5, max_delay=10.0),
    )


def connection_failure(exc: BaseException) -> str | None:
    """What to tell the user when ``exc`` is the driver's failure to connect, or a keyspace or
    table that `stream-app init` has not made yet; else None."""
    from cassandra import AuthenticationFailed, InvalidRequest
    from cassandra.cluster import NoHostAvailable

    if isinstance(exc, InvalidRequest) and "does not exist" in str(exc):
        missing = str(exc).split('message="', 1)[-1].rstrip('"')
        return f"Cassandra: {missing}: run `stream-app init` first"
    if not isinstance(exc, NoHostAvailable):
        return None
    reasons = []
    for host, error in exc.errors.items():
        if isinstance(error, AuthenticationFailed):
            reasons.append(f"{host} refused the login: {error}")
        else:
            reasons.append(f"{host}: {error}")
    return "cannot connect to Cassandra: " + ("; ".join(reasons) or str(exc))


@contextmanager
def connected(settings: CassandraSettings) -> Iterator[Session]:
    """A session for one command; the cluster is shut down afterwards."""
    cluster = open_cluster(settings)
    try:
        yield cluster.connect()
    finally:
        cluster.shutdown()
