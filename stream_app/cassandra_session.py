"""Connections to Cassandra, configured in one place for every client of the project."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.policies import DCAwareRoundRobinPolicy, ExponentialReconnectionPolicy
from cassandra.query import tuple_factory

from stream_app.settings import CassandraSettings

HOT_PATH = "hot-path"  # execution profile returning rows as tuples


def open_cluster(settings: CassandraSettings, connect_timeout_s: float = 10.0) -> Any:
    """A ``cassandra.cluster.Cluster`` for the configured nodes (not yet connected).

    Protocol v5 and the local datacenter are pinned so the driver skips version probing.
    """
    auth = None
    if settings.username:
        password = settings.password.get_secret_value() if settings.password else ""
        auth = PlainTextAuthProvider(username=settings.username, password=password)
    balancing = DCAwareRoundRobinPolicy(local_dc=settings.local_dc)
    profile = ExecutionProfile(
        load_balancing_policy=balancing, request_timeout=settings.request_timeout_s
    )
    # The hot path reads rows as plain tuples: the default named-tuple factory builds a new
    # class for every result, which costs more than the read itself.
    hot = ExecutionProfile(
        load_balancing_policy=balancing,
        request_timeout=settings.request_timeout_s,
        row_factory=tuple_factory,
    )
    return Cluster(
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


@contextmanager
def connected(settings: CassandraSettings) -> Iterator[Any]:
    """A session for one command; the cluster is shut down afterwards."""
    cluster = open_cluster(settings)
    try:
        yield cluster.connect()
    finally:
        cluster.shutdown()
