"""Pure pieces of the scoring path: batch decoding and outputs, the feature cache, metrics,
back-off."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from cassandra import OperationTimedOut, ReadTimeout, WriteTimeout
from cassandra.cluster import NoHostAvailable
from prometheus_client import CollectorRegistry, Histogram

from stream_app.contracts.dead_letter import dead_letters
from stream_app.contracts.decode import decode_client_event
from stream_app.errors import StoreError
from stream_app.features.cache import FeatureCache
from stream_app.features.vector import ServedVector, StoredFeature
from stream_app.messages import InputMessage
from stream_app.monitoring.prometheus import LATENCY_BUCKETS, observe_many
from stream_app.retry import backoff_delays, retry_forever
from stream_app.scoring.batch import decode_events, prediction_outputs
from stream_app.storage.cql import worth_retrying
from stream_app.storage.predictions import unpack

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
EVENT = {
    "schema_version": 1,
    "event_id": "ord-1",
    "event_time": 1795783200000,
    "entities": {"courier_id": "courier-1", "zone_id": "zone-1"},
    "fields": {"distance_km": 2.0},
}


def message(value: bytes | None, offset: int = 0) -> InputMessage:
    return InputMessage("client-events", 1, offset, b"ord-1", value, 1795783200005)


def test_decode_events_separates_valid_invalid_and_missing_entities() -> None:
    no_zone = {**EVENT, "entities": {"courier_id": "courier-1"}}
    accepted, refused = decode_events(
        [message(orjson.dumps(EVENT)), message(b"{", 1), message(orjson.dumps(no_zone), 2)],
        required_entities=["courier_id", "zone_id"],
        max_bytes=65536,
    )
    assert [m.offset for m, _ in accepted] == [0]
    assert [(r.message.offset, r.error.code) for r in refused] == [
        (1, "invalid_json"),
        (2, "missing_entity"),
    ]
    payloads, records = dead_letters(refused, "dead-letter", "scoring", 1795783200010)
    schema = jsonschema.Draft202012Validator(
        orjson.loads((SCHEMAS / "dead_letter.schema.json").read_bytes())
    )
    for payload, (topic, key, value, headers) in zip(payloads, records, strict=True):
        assert topic == "dead-letter"
        assert [name for name, _ in headers] == ["traceparent"]  # a new trace: none came in
        assert key == b"ord-1"
        assert orjson.loads(value) == payload  # what the monitor keeps is what was published
        schema.validate(orjson.loads(value))


def test_prediction_outputs_match_the_schema_and_the_stored_rows() -> None:
    event = decode_client_event(orjson.dumps(EVENT))
    served = ServedVector([2.0, 18.5], ["zone_speed"], 1500)
    records, rows = prediction_outputs(
        [(message(orjson.dumps(EVENT)), event, served)],
        [27.25],
        use_case="delivery_eta",
        model_version="v1",
        role="champion",
        feature_set="abc",
        predictions_topic="predictions",
        scored_at=1795783200030,
        headers_of=lambda m: (("traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01"),),
    )
    schema = jsonschema.Draft202012Validator(
        orjson.loads((SCHEMAS / "prediction.schema.json").read_bytes())
    )
    (topic, key, value, headers), row = records[0], rows[0]
    assert headers == (("traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01"),)
    payload = orjson.loads(value)
    schema.validate(payload)
    assert (topic, key) == ("predictions", b"ord-1")
    assert payload["latency_ms"] == 25.0  # scored_at - the message's Kafka timestamp
    assert payload["feature_age_ms"] == 1500
    assert row.prediction_id == payload["prediction_id"]
    assert list(unpack(row.features)) == [2.0, 18.5]
    assert row.missing_features == ["zone_speed"]
    # the record it was scored from, for a replay to find it by offset
    assert row.source is not None
    assert row.source.offset == 0
    assert row.entities == {"courier_id": "courier-1", "zone_id": "zone-1"}


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


class CountingStore:
    def __init__(self) -> None:
        self.reads: list[list[tuple[str, str]]] = []
        self.value = 1.0

    async def read(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Any]:
        self.reads.append(keys)
        return {key: {"f": StoredFeature(self.value, 0)} for key in keys}


def test_the_cache_serves_within_its_bound_and_rereads_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = CountingStore()
    cache = FeatureCache(store.read, max_age_ms=1000, gather_s=0)  # the clock stands still
    clock = [100.0]
    monkeypatch.setattr("stream_app.features.cache.time.monotonic", lambda: clock[0])
    key = ("courier_id", "c1")

    async def scenario() -> list[float]:
        seen = []
        seen.append((await cache.get_many([key, key]))[key]["f"].value)  # read, deduplicated
        store.value = 2.0
        clock[0] += 0.2  # young: served from cache, no read
        seen.append((await cache.get_many([key]))[key]["f"].value)
        clock[0] += 0.6  # past 0.7 of its life: still served, refreshed in the background
        seen.append((await cache.get_many([key]))[key]["f"].value)
        for _ in range(3):  # let the round start and the refresh run
            await asyncio.sleep(0)
        seen.append((await cache.get_many([key]))[key]["f"].value)
        store.value = 3.0
        clock[0] += 1.5  # past the bound: read in the foreground
        seen.append((await cache.get_many([key]))[key]["f"].value)
        return seen

    assert run(scenario()) == [1.0, 1.0, 1.0, 2.0, 3.0]
    assert store.reads[0] == [key]
    assert len(store.reads) == 3
    assert cache.hits == 3
    assert cache.misses == 2


def test_entries_served_again_are_refreshed_together_and_idle_ones_lapse() -> None:
    store = CountingStore()
    cache = FeatureCache(store.read, max_age_ms=200)  # refreshed at 140 ms, rounds of 20 ms
    keys = [("courier_id", f"c{i}") for i in range(6)]
    lone = ("courier_id", "served-once")

    async def scenario() -> list[float]:
        await cache.get_many([*keys[:3], lone])  # two batches' foreground reads
        await cache.get_many(keys[3:])
        store.value = 2.0
        for key in keys:  # six batches, each served from the cache
            await cache.get_many([key])
        await asyncio.sleep(0.16)  # past 0.7 of their life, before the end of it
        assert store.reads[2:] == [keys]  # one refresh of the six served again, not the lone
        values = [(await cache.get_many([key]))[key]["f"].value for key in keys[:2]]
        await asyncio.sleep(0.4)  # the two served again are refreshed once more; the rest lapse
        return values

    assert run(scenario()) == [2.0, 2.0]
    assert store.reads[3:] == [keys[:2]]
    assert cache.refresh_rounds == 2
    assert cache.misses == 7


def test_a_zero_bound_turns_the_cache_off() -> None:
    store = CountingStore()
    cache = FeatureCache(store.read, max_age_ms=0)
    run(cache.get_many([("k", "1")]))
    run(cache.get_many([("k", "1")]))
    assert len(store.reads) == 2


def test_observe_many_equals_one_observe_per_value() -> None:
    values = [0.0005, 0.001, 0.003, 0.01, 0.049, 0.05, 2.0, 100.0, 0.0]
    one, many = CollectorRegistry(), CollectorRegistry()
    single = Histogram("h", "h", buckets=LATENCY_BUCKETS, registry=one)
    bulk = Histogram("h", "h", buckets=LATENCY_BUCKETS, registry=many)
    for value in values:
        single.observe(value)
    observe_many(bulk, values)
    observe_many(bulk, [])

    def counts(registry: CollectorRegistry) -> list[tuple[str, dict[str, str], float]]:
        samples = next(iter(registry.collect())).samples
        return [(s.name, s.labels, s.value) for s in samples if not s.name.endswith("_created")]

    assert counts(one) == counts(many)


def test_backoff_grows_to_its_cap() -> None:
    delays = [backoff_delays(0.2, 10.0, attempt, jitter=0.0) for attempt in range(10)]
    assert delays[:4] == [0.2, 0.4, 0.8, 1.6]
    assert max(delays) == 10.0
    assert 0.16 <= backoff_delays(0.2, 10.0, 0) <= 0.24


def test_retry_forever_retries_only_what_is_retryable() -> None:
    attempts = []

    async def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("down")
        return "ok"

    result = run(retry_forever(flaky, lambda e: isinstance(e, ConnectionError), "x", 0.001, 0.01))
    assert result == "ok"
    assert len(attempts) == 3

    async def broken() -> str:
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        run(retry_forever(broken, lambda e: isinstance(e, ConnectionError), "x", 0.001, 0.01))


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (OperationTimedOut("no reply within the client's timeout"), True),  # a slow node
        (WriteTimeout("replicas too slow", write_type=0), True),
        (ReadTimeout("replicas too slow"), True),
        (NoHostAvailable("down", {}), True),
        (StoreError("a write failed"), True),
        (ConnectionRefusedError(), True),
        (ValueError("a bug"), False),
        (KeyError("a bug"), False),
    ],
)
def test_writes_are_retried_when_cassandra_is_slow_or_down(
    error: BaseException, retried: bool
) -> None:
    assert worth_retrying(error) is retried
