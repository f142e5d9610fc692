"""The scoring service's delivery rules, through in-memory stores (tests/fakes/stores.py).

A batch returns only when Kafka and Cassandra acknowledged every output; refused records and
failed writes are retried until they are; a model swap takes effect at a batch boundary; A/B
traffic and the shadow go where they belong; events served at their own time read features
as of that time.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

import lightgbm as lgb
import numpy as np
import orjson
import pytest
from cassandra import OperationTimedOut
from prometheus_client import CollectorRegistry

from stream_app.features.vector import StoredFeature
from stream_app.messages import InputMessage
from stream_app.models.scorer import LightGBMScorer
from stream_app.monitoring.prometheus import WorkerMetrics
from stream_app.monitoring.state import Monitor
from stream_app.scoring.model_set import Arm, ModelSet
from stream_app.scoring.service import ScoringService
from stream_app.settings import ConsumerSettings, Settings
from stream_app.use_cases.spec import Serving, load_use_case
from tests.fakes.stores import MemoryFeatures, MemoryPredictions, RecordingPublisher

EATS = load_use_case("delivery_eta")
SETTINGS = Settings().model_copy(
    update={"consumer": ConsumerSettings(retry_initial_s=0.001, retry_max_s=0.005)}
)
TOPICS = SETTINGS.kafka.topics
T0 = 1_795_783_200_000


def scorer(version: str, shift: float = 0.0) -> LightGBMScorer:
    rng = np.random.default_rng(len(version))
    x = rng.normal(size=(500, len(EATS.feature_names)))
    y = 30 + 3 * x[:, 0] + shift
    booster = lgb.train({"objective": "regression", "verbose": -1, "num_threads": 1},
                        lgb.Dataset(x, y), num_boost_round=5)  # fmt: skip
    return LightGBMScorer(version, EATS.feature_names, booster.model_to_string())


class Harness:
    def __init__(self, use_case: Any = EATS) -> None:
        self.features = MemoryFeatures()
        self.predictions = MemoryPredictions()
        self.publisher = RecordingPublisher()
        self.service = ScoringService(
            settings=SETTINGS, use_case=use_case, features=self.features,
            predictions=self.predictions, publisher=self.publisher,
            metrics=WorkerMetrics(CollectorRegistry()),
            monitor=Monitor(use_case, SETTINGS.monitoring), read_at=self.features.read_at,
        )  # fmt: skip
        self.serve(champion="v1")

    def serve(self, **roles: str) -> None:
        models = {role: self.service.model_for(scorer(v), role) for role, v in roles.items()}
        arms = tuple(Arm(m, 0.5) for slot, m in models.items() if slot == "challenger")
        self.service.swap(ModelSet(champion=models["champion"], challengers=arms,
                                   shadow=models.get("shadow")))  # fmt: skip


def event(i: int, courier: str = "c1", at: int = T0, **change: Any) -> InputMessage:
    payload: dict[str, Any] = {
        "schema_version": 1, "event_id": f"e{i}", "event_time": at,
        "entities": {"courier_id": courier, "restaurant_id": "r1", "zone_id": "z1"},
        "fields": {"distance_km": 3.0, "items": 2, "hour_of_day": 12.0, "day_of_week": 2},
    }  # fmt: skip
    payload.update(change)
    return InputMessage(TOPICS.client_events, 0, i, f"e{i}".encode(), orjson.dumps(payload), at)


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def values(records: list[Any]) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in records]


def test_a_batch_returns_only_when_kafka_and_cassandra_acknowledged() -> None:
    async def scenario() -> None:
        h = Harness()
        published, stored = h.publisher.gate.hold(), h.predictions.gate.hold()
        batch = asyncio.ensure_future(h.service.process([event(i) for i in range(5)]))
        await asyncio.sleep(0.05)
        assert not batch.done()
        published.set()
        await asyncio.sleep(0.05)
        assert not batch.done()  # Cassandra has not answered yet
        stored.set()
        result = await asyncio.wait_for(batch, 5)
        assert result.predictions == 5
        assert [p["event_id"] for p in values(h.publisher.on(TOPICS.predictions))] == [
            f"e{i}" for i in range(5)
        ]
        assert [r.event_id for r in h.predictions.rows] == [f"e{i}" for i in range(5)]

    run(scenario)


def test_records_kafka_refused_are_sent_again_until_acknowledged_and_only_they() -> None:
    async def scenario() -> None:
        h = Harness()
        h.publisher.refuse_next = [2, 1]  # two records fail, then one of them again
        await h.service.process([event(i) for i in range(4)])
        ids = Counter(p["event_id"] for p in values(h.publisher.on(TOPICS.predictions)))
        assert ids == {f"e{i}": 1 for i in range(4)}  # each acknowledged once, none lost
        assert h.publisher.attempts == 3

    run(scenario)


def test_a_slow_cassandra_is_waited_for_and_an_unexpected_error_is_raised() -> None:
    async def scenario() -> None:
        h = Harness()
        h.predictions.gate.failures = [OperationTimedOut("slow"), OperationTimedOut("slow")]
        result = await h.service.process([event(1)])
        assert result.predictions == 1
        assert h.predictions.gate.calls == 3
        assert [r.event_id for r in h.predictions.rows] == ["e1"]
        h.predictions.gate.failures = [ValueError("a bug")]
        with pytest.raises(ValueError, match="a bug"):  # the batch consumer then ends the worker
            await h.service.process([event(2)])

    run(scenario)


def test_a_swap_takes_effect_at_the_next_batch() -> None:
    async def scenario() -> None:
        h = Harness()
        hold = h.publisher.gate.hold()
        first = asyncio.ensure_future(h.service.process([event(1), event(2)]))
        await asyncio.sleep(0.02)
        h.serve(champion="v2")  # announced while the first batch waits for Kafka
        hold.set()
        await first
        h.publisher.gate.held = None
        await h.service.process([event(3)])
        versions = {p["event_id"]: p["model_version"] for p in
                    values(h.publisher.on(TOPICS.predictions))}  # fmt: skip
        assert versions == {"e1": "v1", "e2": "v1", "e3": "v2"}

    run(scenario)


def test_challenger_traffic_by_entity_and_the_shadow_on_its_own_topic() -> None:
    async def scenario() -> None:
        h = Harness()
        h.serve(champion="v1", challenger="v2", shadow="v3")
        couriers = [f"c{i % 40}" for i in range(200)]
        await h.service.process([event(i, courier=c) for i, c in enumerate(couriers)])
        live = values(h.publisher.on(TOPICS.predictions))
        shadow = values(h.publisher.on(TOPICS.predictions_shadow))
        assert len(live) == len(shadow) == 200  # one live and one shadow prediction each
        by_courier: dict[str, set[str]] = {}
        for p, courier in zip(sorted(live, key=lambda p: int(p["event_id"][1:])), couriers,
                              strict=True):  # fmt: skip
            by_courier.setdefault(courier, set()).add(p["model_version"])
        assert all(len(v) == 1 for v in by_courier.values())  # an entity stays with its model
        assert {v for vs in by_courier.values() for v in vs} == {"v1", "v2"}
        assert {p["model_version"] for p in shadow} == {"v3"}

    run(scenario)


def test_invalid_events_and_events_without_the_split_key_go_to_dead_letter() -> None:
    async def scenario() -> None:
        h = Harness()
        no_split = event(2, entities={"restaurant_id": "r1", "zone_id": "z1"})
        bad = InputMessage(TOPICS.client_events, 0, 3, b"k", b"{not json", T0)
        result = await h.service.process([event(1), no_split, bad])
        assert result.predictions == 1
        assert result.dead_letters == {"missing_entity": 1, "invalid_json": 1}
        dead = values(h.publisher.on(TOPICS.dead_letter))
        assert sorted(d["offset"] for d in dead) == [2, 3]

    run(scenario)


def test_served_at_event_time_features_are_read_for_each_window_of_event_times() -> None:
    async def scenario() -> None:
        replayed = EATS.model_copy(update={"serving": Serving(features_at="event_time")})
        h = Harness(replayed)
        h.features.features[("courier_id", "c1")] = {
            "courier_speed_mean_10m": StoredFeature(17.0, T0 - 3 * 3_600_000 - 60_000)
        }
        hour = 3_600_000
        batch = [event(1, at=T0 - 3 * hour), event(2, at=T0 - 3 * hour + 1_000),
                 event(3, at=T0 - hour)]  # fmt: skip
        await h.service.process(batch)
        at_times = sorted(at for _, at in h.features.reads if at is not None)
        assert at_times == [T0 - 3 * hour, T0 - hour]  # one read per window, the earliest time
        rows = {r.event_id: r for r in h.predictions.rows}
        # served at its own time, the feature was a minute old for e1, two hours for e3
        assert "courier_speed_mean_10m" not in rows["e1"].missing_features
        assert "courier_speed_mean_10m" in rows["e3"].missing_features  # older than 15 min

    run(scenario)


def test_every_stage_of_a_batch_is_timed_where_its_time_goes() -> None:
    """kafka_wait per event; decode, features, score, publish and store per batch: in the
    histogram and in the monitor (dashboard, status). Here Kafka answers at least 50 ms after
    it is asked and Cassandra at least 150 ms, and the events waited 200 ms before the batch
    began."""

    async def scenario() -> None:
        registry = CollectorRegistry()
        h = Harness()
        h.service.metrics = WorkerMetrics(registry)
        published, stored = h.publisher.gate.hold(), h.predictions.gate.hold()
        produced = int(time.time() * 1000) - 200
        batch = asyncio.ensure_future(h.service.process([event(i, at=produced) for i in range(5)]))
        for _ in range(5_000):  # until Kafka and Cassandra were both asked
            if h.publisher.gate.calls and h.predictions.gate.calls:
                break
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.05)
        published.set()
        await asyncio.sleep(0.1)
        stored.set()
        await asyncio.wait_for(batch, 5)
        stages = h.service.monitor.snapshot()["stages_ms"]
        assert list(stages) == ["kafka_wait", "decode", "features", "score", "publish", "store"]
        assert stages["kafka_wait"]["n"] == 5
        assert 200 <= stages["kafka_wait"]["p50"] < 1_000
        assert all(stages[s]["n"] == 1 for s in ("decode", "features", "score", "publish"))
        assert 50 <= stages["publish"]["p50"] < stages["store"]["p50"]
        assert stages["store"]["p50"] >= 150
        counts = {
            sample.labels["stage"]: sample.value
            for family in registry.collect()
            for sample in family.samples
            if sample.name == "stream_app_scoring_stage_seconds_count"
        }
        assert counts == {"kafka_wait": 5, "decode": 1, "features": 1, "score": 1,
                          "publish": 1, "store": 1}  # fmt: skip

    run(scenario)
