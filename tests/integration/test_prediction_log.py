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
