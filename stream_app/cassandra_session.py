"""Connections to Cassandra, configured in one place for every client of the project."""

from __future__ import annotations

from typing import Any

from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.policies import DCAwareRoundRobinPolicy

from stream_app.settings import CassandraSettings


def open_cluster(settings: CassandraSettings, connect_timeout_s: float = 10.0) -> Any:
    """A ``cassandra.cluster.Cluster`` for the configured nodes (not yet connected).

    Protocol v5 and the local datacenter are pinned so the driver skips version probing.
    """
    auth = None
    if settings.username:
        password = settings.password.get_secret_value() if settings.password else ""
        auth = PlainTextAuthProvider(username=settings.username, password=password)
    profile = ExecutionProfile(
        load_balancing_policy=DCAwareRoundRobinPolicy(local_dc=settings.local_dc),
        request_timeout=settings.request_timeout_s,
    )
    return Cluster(
        contact_points=settings.contact_points,
        port=settings.port,
        protocol_version=5,
        auth_provider=auth,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        connect_timeout=connect_timeout_s,
        control_connection_timeout=connect_timeout_s,
    )
