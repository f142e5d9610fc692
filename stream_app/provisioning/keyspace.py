"""Create the keyspace and apply the versioned CQL files of ``schemas/cassandra/`` in order.

Files are named ``V<number>__<description>.cql``. Each applied file is recorded in the
``schema_migrations`` table with a checksum; a second run applies nothing, and a file changed
after it was applied is an error (add a new version instead).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cassandra.cluster import Session

from stream_app.bundled import bundled_path
from stream_app.cassandra_session import open_cluster
from stream_app.errors import SchemaMigrationError
from stream_app.settings import CassandraSettings

_FILE_NAME = re.compile(r"^V(\d+)__([a-z0-9_]+)\.cql$")


def _index_logged_buckets(session: Session, keyspace: str) -> None:
    from stream_app.storage.predictions import index_logged_buckets

    index_logged_buckets(session, keyspace)


# Data steps that go with a version, run once after its CQL (before it counts as applied).
AFTER_MIGRATION: dict[int, Callable[[Any, str], None]] = {11: _index_logged_buckets}


@dataclass(frozen=True)
class Migration:
    """One versioned CQL file."""

    version: int
    name: str
    statements: list[str]
    checksum: str


@dataclass(frozen=True)
class KeyspaceOutcome:
    """What ``init`` did: whether it created the keyspace and which versions it applied."""

    keyspace: str
    created_keyspace: bool
    applied: list[Migration]
    already_applied: int


def split_statements(cql: str) -> list[str]:
    """The statements of a CQL file: ``--`` and ``//`` comments dropped, split on ``;``."""
    lines = []
    for line in cql.splitlines():
        stripped = line.strip()
        if stripped.startswith(("--", "//")):
            continue
        lines.append(line)
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def load_migrations(folder: Path | None = None) -> list[Migration]:
    """The migrations in ``folder`` (default: the shipped ``schemas/cassandra``), by version."""
    folder = folder or bundled_path("schemas/cassandra")
    migrations = []
    for path in sorted(folder.glob("*.cql")):
        match = _FILE_NAME.match(path.name)
        if not match:
            raise SchemaMigrationError(f"{path.name}: expected V<number>__<name>.cql")
        text = path.read_text()
        migrations.append(
            Migration(
                version=int(match.group(1)),
                name=match.group(2),
                statements=split_statements(text),
                checksum=hashlib.sha256(text.encode()).hexdigest(),
            )
        )
    migrations.sort(key=lambda m: m.version)
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise SchemaMigrationError(f"two CQL files share a version number: {versions}")
    return migrations


def ensure_keyspace(settings: CassandraSettings, folder: Path | None = None) -> KeyspaceOutcome:
    """Create the keyspace if missing and apply the migrations not yet applied."""
    migrations = load_migrations(folder)
    cluster = open_cluster(settings)
    try:
        session = cluster.connect()
        return _migrate(session, settings, migrations)
    finally:
        cluster.shutdown()


def pending_migrations(
    session: Session, keyspace: str, folder: Path | None = None
) -> list[Migration]:
    """The migrations not applied to ``keyspace`` (all of them when it does not exist)."""
    migrations = load_migrations(folder)
    tables = session.execute(
        "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (keyspace,)
    )
    if "schema_migrations" not in {row.table_name for row in tables}:
        return migrations
    applied = {
        row.version for row in session.execute(f"SELECT version FROM {keyspace}.schema_migrations")
    }
    return [m for m in migrations if m.version not in applied]


def replication(settings: CassandraSettings) -> str:
    """The keyspace's replication map in CQL, from the settings."""
    if settings.replication_strategy == "SimpleStrategy":
        return f"{{'class': 'SimpleStrategy', 'replication_factor': {settings.replication_factor}}}"
    per_dc = settings.datacenters or {settings.local_dc: settings.replication_factor}
    factors = "".join(f", '{dc}': {count}" for dc, count in sorted(per_dc.items()))
    return f"{{'class': 'NetworkTopologyStrategy'{factors}}}"


def _migrate(
    session: Session, settings: CassandraSettings, migrations: list[Migration]
) -> KeyspaceOutcome:
    keyspace = settings.keyspace
    exists = session.execute(
        "SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = %s", (keyspace,)
    ).one()
    if exists is None:
        session.execute(
            f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {replication(settings)}"
        )
    session.set_keyspace(keyspace)
    session.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        "version int PRIMARY KEY, name text, checksum text, applied_at timestamp)"
    )
    applied = {row.version: row for row in session.execute("SELECT * FROM schema_migrations")}
    done = []
    for migration in migrations:
        previous = applied.get(migration.version)
        if previous is not None:
            if previous.checksum != migration.checksum:
                raise SchemaMigrationError(
                    f"V{migration.version}__{migration.name}.cql changed after it was applied; "
                    "add a new version instead of editing an applied one"
                )
            continue
        for statement in migration.statements:
            try:
                session.execute(statement)
            except Exception as exc:  # the driver raises many server error types
                raise SchemaMigrationError(
                    f"V{migration.version}__{migration.name}.cql failed at:\n{statement}\n{exc}"
                ) from exc
        after = AFTER_MIGRATION.get(migration.version)
        if after is not None:
            after(session, keyspace)
        session.execute(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at) "
            "VALUES (%s, %s, %s, %s)",
            (migration.version, migration.name, migration.checksum, datetime.now(UTC)),
        )
        done.append(migration)
    return KeyspaceOutcome(keyspace, exists is None, done, len(migrations) - len(done))
