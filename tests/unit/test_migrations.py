from __future__ import annotations

from pathlib import Path

import pytest

from stream_app.errors import SchemaMigrationError
from stream_app.provisioning.keyspace import load_migrations, replication, split_statements
from stream_app.settings import CassandraSettings


def test_split_statements_drops_comments_and_splits_on_semicolons() -> None:
    cql = """
    -- a comment; with a semicolon
    CREATE TABLE a (k int PRIMARY KEY);
    // another
    CREATE TABLE b (
        k int PRIMARY KEY   -- trailing comments stay inside the statement
    );
    """
    statements = split_statements(cql)
    assert len(statements) == 2
    assert statements[0] == "CREATE TABLE a (k int PRIMARY KEY)"
    assert statements[1].startswith("CREATE TABLE b")


def test_shipped_migrations_are_numbered_without_gaps() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert all(m.statements for m in migrations)


def test_migrations_are_applied_by_number_not_by_file_name(tmp_path: Path) -> None:
    for name in ("V10__ten.cql", "V2__two.cql", "V1__one.cql"):  # glob order: V10 before V2
        (tmp_path / name).write_text(f"CREATE TABLE {name[:-4].lower()} (k int PRIMARY KEY);")
    assert [(m.version, m.name) for m in load_migrations(tmp_path)] == [
        (1, "one"), (2, "two"), (10, "ten"),
    ]  # fmt: skip


def test_a_badly_named_file_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "tables.cql").write_text("CREATE TABLE t (k int PRIMARY KEY);")
    with pytest.raises(SchemaMigrationError, match=r"V<number>__<name>\.cql"):
        load_migrations(tmp_path)


def test_two_files_with_one_version_are_rejected(tmp_path: Path) -> None:
    (tmp_path / "V1__a.cql").write_text("CREATE TABLE a (k int PRIMARY KEY);")
    (tmp_path / "V01__b.cql").write_text("CREATE TABLE b (k int PRIMARY KEY);")
    with pytest.raises(SchemaMigrationError, match="share a version"):
        load_migrations(tmp_path)


def test_checksum_follows_content(tmp_path: Path) -> None:
    path = tmp_path / "V1__a.cql"
    path.write_text("CREATE TABLE a (k int PRIMARY KEY);")
    before = load_migrations(tmp_path)[0].checksum
    path.write_text("CREATE TABLE a (k text PRIMARY KEY);")
    assert load_migrations(tmp_path)[0].checksum != before


def test_the_keyspace_replication_follows_the_settings() -> None:
    assert replication(CassandraSettings(replication_factor=2)) == (
        "{'class': 'SimpleStrategy', 'replication_factor': 2}"
    )
    nts = CassandraSettings(replication_strategy="NetworkTopologyStrategy", replication_factor=3,
                            local_dc="dc1")  # fmt: skip
    assert replication(nts) == "{'class': 'NetworkTopologyStrategy', 'dc1': 3}"
    both = nts.model_copy(update={"datacenters": {"eu-west": 3, "dc1": 2}})
    assert replication(both) == "{'class': 'NetworkTopologyStrategy', 'dc1': 2, 'eu-west': 3}"
    with pytest.raises(ValueError, match="datacenter name"):
        CassandraSettings(datacenters={"dc1'; DROP": 3})
