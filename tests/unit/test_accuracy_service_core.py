"""The accuracy service's label join, through in-memory stores: a label joins its stored
prediction at once, waits (kept in the store) when the prediction is not there yet, joins on a
later try, expires after the use case's max_delay, and a worker taking the partition over
goes on waiting for it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

from stream_app.messages import InputMessage
from stream_app.monitoring.accuracy import FIRST_RETRY_MS, AccuracyService
from stream_app.monitoring.prometheus import WorkerMetrics
from stream_app.monitoring.state import Monitor
from stream_app.settings import Settings
from stream_app.storage.labels import StoredPrediction
from stream_app.timeparse import parse_duration_ms
from stream_app.use_cases.spec import load_use_case
from tests.fakes.stores import MemoryLabels, RecordingPublisher

EATS = load_use_case("delivery_eta")
SETTINGS = Settings()
TOPICS = SETTINGS.kafka.topics
T0 = 1_795_783_200_000


class Clock:
    def __init__(self) -> None:
        self.ms = T0

    def __call__(self) -> float:
        return self.ms / 1000


def harness() -> tuple[AccuracyService, MemoryLabels, RecordingPublisher, Clock]:
    labels, publisher, clock = MemoryLabels(), RecordingPublisher(), Clock()
    service = AccuracyService(
        settings=SETTINGS, use_case=EATS, labels=labels, publisher=publisher,
        monitor=Monitor(EATS, SETTINGS.monitoring), metrics=WorkerMetrics(CollectorRegistry()),
        clock=clock,
    )  # fmt: skip
    return service, labels, publisher, clock


def truth(event_id: str, label: float, offset: int = 0, partition: int = 0) -> InputMessage:
    value = {"schema_version": 1, "event_id": event_id, "label": label, "label_time": T0}
    return InputMessage(TOPICS.ground_truth, partition, offset, event_id.encode(),
                        orjson.dumps(value), T0)  # fmt: skip


def predicted(event_id: str, value: float, version: str = "v1") -> StoredPrediction:
    return StoredPrediction(event_id, version, f"p-{event_id}-{version}", "champion", value,
                            T0 - 1_800_000, T0 - 1_800_000)  # fmt: skip


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def accuracy(publisher: RecordingPublisher) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in publisher.on(TOPICS.accuracy_events)]


def test_a_label_joins_every_stored_prediction_of_its_event() -> None:
    async def scenario() -> None:
        service, labels, publisher, _ = harness()
        labels.predictions["e1"] = [predicted("e1", 31.0), predicted("e1", 40.0, "v2")]
        assert await service.process([truth("e1", 33.0)]) == 2
        events = sorted(accuracy(publisher), key=lambda a: a["model_version"])
        assert [(a["model_version"], a["error"], a["correct"]) for a in events] == [
            ("v1", -2.0, True), ("v2", 7.0, False)]  # tolerance 5 minutes  # fmt: skip
        assert events[0]["label_delay_ms"] == 1_800_000
        assert "e1" in labels.labels
        assert service.waiting == {}

    run(scenario)


def test_a_label_before_its_prediction_waits_and_joins_later() -> None:
    async def scenario() -> None:
        service, labels, publisher, clock = harness()
        assert await service.process([truth("e2", 20.0)]) == 0
        assert "e2" in labels.waiting_labels  # kept for a worker that takes over
        await service.retry_waiting()  # not due yet: nothing happens
        assert accuracy(publisher) == []
        labels.predictions["e2"] = [predicted("e2", 21.0)]
        clock.ms += FIRST_RETRY_MS
        await service.retry_waiting()
        assert [a["event_id"] for a in accuracy(publisher)] == ["e2"]
        assert labels.finished == ["e2"]
        assert "e2" not in labels.waiting_labels
        assert service.waiting == {}

    run(scenario)


def test_a_label_whose_prediction_never_comes_expires_after_max_delay() -> None:
    async def scenario() -> None:
        service, labels, publisher, clock = harness()
        await service.process([truth("e3", 20.0)])
        max_delay = parse_duration_ms(EATS.label.max_delay)
        clock.ms += FIRST_RETRY_MS
        await service.retry_waiting()  # tried, still nothing: backs off
        assert "e3" in service.waiting
        clock.ms += max_delay + 1
        await service.retry_waiting()
        assert service.waiting == {}
        assert labels.finished == ["e3"]
        assert accuracy(publisher) == []
        assert service.monitor.labels_unmatched == 1

    run(scenario)


def test_a_worker_taking_the_partition_over_goes_on_waiting() -> None:
    async def scenario() -> None:
        first, labels, _, clock = harness()
        await first.process([truth("e4", 20.0, partition=3)])
        second = AccuracyService(
            settings=SETTINGS, use_case=EATS, labels=labels, publisher=RecordingPublisher(),
            monitor=Monitor(EATS, SETTINGS.monitoring),
            metrics=WorkerMetrics(CollectorRegistry()), clock=clock,
        )  # fmt: skip
        from cassandra import ReadTimeout

        labels.gate.failures.append(ReadTimeout("overloaded", consistency=6))
        await second.on_partitions_assigned([3])  # the timed-out read is tried again
        assert set(second.waiting) == {"e4"}
        first.on_partitions_revoked([3])
        assert first.waiting == {}

    run(scenario)


def test_invalid_ground_truth_goes_to_dead_letter() -> None:
    async def scenario() -> None:
        service, _, publisher, _ = harness()
        bad = InputMessage(TOPICS.ground_truth, 0, 7, b"k", b'{"schema_version": 1}', T0)
        await service.process([bad])
        dead = [orjson.loads(r.value) for r in publisher.on(TOPICS.dead_letter)]
        assert [(d["offset"], d["error_code"]) for d in dead] == [(7, "missing_field")]

    run(scenario)
