"""A CQL write/read round trip through the project's own session settings."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest


@pytest.fixture
def scratch_keyspace(cassandra_session: Any, tag: str) -> Iterator[str]:
    keyspace = f"test_{tag}"
    cassandra_session.execute(
        f"CREATE KEYSPACE {keyspace} WITH replication = "
        "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    )
    yield keyspace
    cassandra_session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")


def test_cql_write_read_round_trip(cassandra_session: Any, scratch_keyspace: str) -> None:
    table = f"{scratch_keyspace}.readings"
    cassandra_session.execute(
        f"CREATE TABLE {table} (entity text, at timestamp, value double, "
        "PRIMARY KEY ((entity), at))"
    )
    insert = cassandra_session.prepare(f"INSERT INTO {table} (entity, at, value) VALUES (?, ?, ?)")
    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    rows = [("courier-1", now.replace(second=s), float(s) / 2) for s in range(10)]
    for row in rows:
        cassandra_session.execute(insert, row)
    select = cassandra_session.prepare(f"SELECT at, value FROM {table} WHERE entity = ?")
    read = [
        (r.at.replace(tzinfo=UTC), r.value)
        for r in cassandra_session.execute(select, ["courier-1"])
    ]
    assert read == [(at, value) for _, at, value in rows]
