"""The prediction log read back by time: whole chunks for training scans, and only the chunks
scored in a range for replays."""

from __future__ import annotations

from typing import Any

from stream_app.storage.predictions import BUCKET_MS, PredictionRow, PredictionStore, pack
from tests.conftest import Deployment


def rows(prefix: str, scored_at: int, count: int = 3) -> list[PredictionRow]:
    return [
        PredictionRow(f"{prefix}-{i}", "v1", f"{prefix}-p{i}", "champion", float(i), "set",
                      pack([float(i), 2.0]), [], 0, scored_at - 100, scored_at, 1.0)
        for i in range(count)
    ]  # fmt: skip


def test_chunks_by_when_they_were_scored(deployment: Deployment, cassandra_session: Any) -> None:
    store = PredictionStore(cassandra_session, deployment.settings.cassandra.keyspace, "uc")
    start = 1_795_800_000_000 - 1_795_800_000_000 % BUCKET_MS + 60_000
    end = start + 900_000
    store.write(rows("before", start - 30_000))  # the bucket before the range
    store.write(rows("inside", start + 1_000))
    store.write(rows("inside-later", start + 700_000))  # the next bucket
    store.write(rows("after", end + 5_000))

    def events(chunks: Any) -> set[str]:
        return {e.split("-")[0] + ("-later" if "later" in e else "")
                for c in chunks for e in c.columns["event_ids"]}  # fmt: skip

    # whole buckets: from the one before the range's to the one holding its end
    assert events(store.chunks(start, end)) == {"before", "inside", "inside-later", "after"}
    assert events(store.chunks(start, end, started_in_range=True)) == {"inside", "inside-later"}
    scanned = list(store.scan(start, end))
    assert sorted(r.event_id for r in scanned) == [f"inside-{i}" for i in range(3)] + [
        f"inside-later-{i}" for i in range(3)
    ]
    assert scanned[0].features.tolist() == [0.0, 2.0]


def test_chunks_logged_as_json_read_back_beside_binary_ones(
    deployment: Deployment, cassandra_session: Any, monkeypatch: Any
) -> None:
    from stream_app.storage import log_columns

    store = PredictionStore(cassandra_session, deployment.settings.cassandra.keyspace, "uc-json")
    start = 1_795_900_000_000 - 1_795_900_000_000 % BUCKET_MS
    with monkeypatch.context() as patch:  # a chunk as the versions before the binary columns
        patch.setattr(log_columns, "encode", log_columns.encode_json)
        store.write(rows("old", start + 1_000))
    store.write(rows("new", start + 2_000))
    blobs = [row.columns for row in cassandra_session.execute(
        f"SELECT columns FROM {deployment.settings.cassandra.keyspace}.prediction_log "
        "WHERE use_case = 'uc-json' AND bucket = %s AND shard IN (0,1,2,3,4,5,6,7)", (start,)
    )]  # fmt: skip
    assert sorted(b[:1] for b in blobs) == [b"\x00", b"{"]
    scanned = sorted(store.scan(start, start + BUCKET_MS), key=lambda r: r.event_id)
    assert [(r.event_id, r.value, r.latency_ms, r.features.tolist()) for r in scanned] == [
        (f"{prefix}-{i}", float(i), 1.0, [float(i), 2.0]) for prefix in ("new", "old")
        for i in range(3)
    ]  # fmt: skip


def test_live_rows_read_back_with_their_sources_and_history_without(
    deployment: Deployment, cassandra_session: Any
) -> None:
    from stream_app.messages import InputMessage

    store = PredictionStore(cassandra_session, deployment.settings.cassandra.keyspace, "uc-src")
    start = 1_796_000_000_000 - 1_796_000_000_000 % BUCKET_MS
    live = [
        r._replace(source=InputMessage("client-events", 2, 40 + i, None, b"{}", 7_000 + i),
                   entities={"zone_id": f"z{i}"})
        for i, r in enumerate(rows("live", start + 1_000))
    ]  # fmt: skip
    store.write(live)
    store.write(rows("history", start + 2_000))  # no source: matched by event id
    chunks = {c.columns["event_ids"][0]: c for c in store.chunks(start, start + BUCKET_MS)}
    sources = chunks["live-0"].sources
    assert sources is not None
    assert sources.topics == ["client-events"]
    assert sources.partitions.tolist() == [2, 2, 2]
    assert sources.offsets.tolist() == [40, 41, 42]
    assert sources.timestamps.tolist() == [7_000, 7_001, 7_002]
    assert sources.entity("zone_id") == ["z0", "z1", "z2"]
    assert chunks["history-0"].sources is None


def test_a_small_batch_is_stored_in_one_request_and_a_large_one_in_several(
    deployment: Deployment, cassandra_session: Any
) -> None:
    import asyncio

    sent: list[Any] = []

    class Counting:  # the session, counting the requests sent
        def __getattr__(self, name: str) -> Any:
            return getattr(cassandra_session, name)

        def execute_async(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
            sent.append(statement)
            return cassandra_session.execute_async(statement, *args, **kwargs)

    store = PredictionStore(Counting(), deployment.settings.cassandra.keyspace, "uc-one")
    start = 1_796_100_000_000 - 1_796_100_000_000 % BUCKET_MS
    asyncio.run(store.write_async(rows("small", start + 1_000, count=5)))
    assert len(sent) == 1  # by-event rows, the log chunk and its bucket's index together
    asyncio.run(store.write_async(rows("large", start + 2_000, count=120)))
    assert len(sent) == 1 + 4  # three by-event batches (50 rows each at most) and the chunk
    for prefix, count in (("small", 5), ("large", 120)):
        assert [r.prediction_id for r in store.for_event(f"{prefix}-{count - 1}")] == [
            f"{prefix}-p{count - 1}"
        ]
    scanned = {r.event_id for r in store.scan(start, start + BUCKET_MS)}
    assert scanned == {f"small-{i}" for i in range(5)} | {f"large-{i}" for i in range(120)}


def test_the_hot_path_binder_binds_what_the_driver_binds(
    deployment: Deployment, cassandra_session: Any
) -> None:
    from datetime import UTC, datetime

    from stream_app.storage.cql import binder

    prepared = cassandra_session.prepare(
        f"INSERT INTO {deployment.settings.cassandra.keyspace}.predictions (use_case, event_id, "
        "model_version, prediction_id, role, value, event_time, scored_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    )
    bind = binder(prepared)
    when = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    for values in [
        ("uc", "e-1", "v1", "p-1", "champion", 1.5, 1_796_000_000_000, 1_796_000_000_005),
        ("uc", "é-ü", "v1", "p-2", "shadow", None, 0, -1),  # unicode, a null, odd times
        ("uc", "e-3", "v1", "p-3", "champion", 2, when, when),  # left to the driver
    ]:
        assert bind(values).values == prepared.bind(values).values
        assert bind(values).routing_key == prepared.bind(values).routing_key
