"""`stream-app simulate`: a live world producing to Kafka at a given rate.

Client events (a share of them corrupted on request), sensor readings and, after each event's
label delay, its ground truth, with a seeded world so runs are reproducible. Progress goes to
stderr once a second; the summary is returned for the caller to print.
"""

from __future__ import annotations

import heapq
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np
from confluent_kafka import Producer

from stream_app.errors import StreamAppError
from stream_app.kafka.producer import produce_when_room
from stream_app.progress import StatusLine
from stream_app.settings import Settings
from stream_app.simulation.corrupt import corrupt
from stream_app.simulation.payloads import (
    Record,
    client_event_records,
    ground_truth_records,
    reading_records,
)
from stream_app.simulation.world import World
from stream_app.timeparse import parse_duration_ms
from stream_app.use_cases.spec import AggregateFeature, UseCase

TICK_S = 0.05


@dataclass
class LiveOptions:
    """What one `simulate` run produces."""

    rate: float  # client events per second
    duration_s: float
    seed: int = 42
    drift_at_s: float | None = None
    invalid_rate: float = 0.0
    label_delay_factor: float = 1 / 60  # compress the spec's label delays (30 min -> 30 s)
    wait_for_labels: bool = True
    readings_per_event: float | None = None  # default: each entity every reading_interval
    prime: bool = True  # first, readings of the recent past (a world already running)
    run_id: str | None = None


@dataclass
class LiveReport:
    """Counts of what was produced, for the summary line and for tests."""

    run_id: str
    client_events: int = 0
    invalid: dict[str, int] = field(default_factory=dict)
    readings: int = 0
    ground_truth: int = 0
    unlabelled: int = 0
    delivery_failures: int = 0
    seconds: float = 0.0
    events_seconds: float = 0.0  # until the last client event was handed to the producer
    drifted_events: int = 0

    @property
    def records(self) -> int:
        return self.client_events + self.readings + self.ground_truth


def producer_config(settings: Settings, failures: list[str]) -> dict[str, Any]:
    """A producer for bulk simulated traffic: batched, compressed, idempotent."""
    return settings.kafka.client_config(
        {
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20,
            "batch.num.messages": 10_000,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 2_000_000,
            "queue.buffering.max.kbytes": 2_097_152,
            "delivery.report.only.error": True,
            "log_level": 4,  # warnings and worse
            "on_delivery": lambda err, msg: failures.append(str(err)) if err else None,
        }
    )


def _produce(producer: Producer, topic: str, records: list[Record]) -> None:
    for key, value in records:
        produce_when_room(producer, topic, value, key)
    producer.poll(0)


def run_live(
    settings: Settings, use_case: UseCase, options: LiveOptions, progress: TextIO = sys.stderr
) -> LiveReport:
    """Produce for ``options.duration_s`` seconds, then wait for the pending labels."""
    world = World(use_case, options.seed)
    topics = settings.kafka.topics
    started_wall = time.time()
    run_id = options.run_id or f"s{options.seed}-{int(started_wall):x}"
    report = LiveReport(run_id)
    failures: list[str] = []
    producer = Producer(producer_config(settings, failures))
    rng = np.random.default_rng([options.seed, 5])
    # Readings: by default each entity pings every `reading_interval` (as in the history the
    # model learnt from); --readings-per-event ties them to the event rate instead (load tests).
    per_event = options.readings_per_event
    pinging = world.sim.population[world.sim.reading_entities[0]]
    reading_rate = pinging / (parse_duration_ms(world.sim.reading_interval) / 1000)
    readings_sent = 0
    if options.prime:
        report.readings += _prime(world, producer, topics.sensor_readings, reading_rate, rng)
    pending: list[tuple[int, str, float]] = []  # (due ms, event id, label)
    started = time.monotonic()
    status = StatusLine(progress, every_s=1.0)
    sent = 0
    total = int(options.rate * options.duration_s)
    # Exactly rate x duration events: if the machine cannot keep the rate, it takes longer
    # and the report's rate says so.
    while sent < total:
        elapsed = time.monotonic() - started
        due = min(int(options.rate * (elapsed + TICK_S)), total)
        now_ms = int(time.time() * 1000)
        drifted = options.drift_at_s is not None and elapsed >= options.drift_at_s
        if (n := due - sent) > 0:
            _emit_events(world, producer, topics.client_events, n, now_ms, drifted, rng,
                         options, report, pending, sent)  # fmt: skip
            sent = due
        if per_event is not None:
            readings = int(rng.poisson(n * per_event)) if n > 0 and per_event else 0
        else:
            readings = int(reading_rate * (elapsed + TICK_S)) - readings_sent
        if readings > 0:
            times = now_ms - rng.integers(0, int(TICK_S * 1000) + 1, readings)
            records = reading_records(world, world.readings(times, drifted=drifted))
            _produce(producer, topics.sensor_readings, records)
            report.readings += readings
            readings_sent += readings
        _emit_labels(producer, topics.ground_truth, pending, now_ms, report)
        status(_status(report, elapsed, len(pending)))
        time.sleep(max(0.0, started + elapsed + TICK_S - time.monotonic()))
    report.events_seconds = time.monotonic() - started
    while options.wait_for_labels and pending:
        now_ms = int(time.time() * 1000)
        _emit_labels(producer, topics.ground_truth, pending, now_ms, report)
        status(_status(report, time.monotonic() - started, len(pending)))
        if pending:
            time.sleep(min(TICK_S, max(0.0, (pending[0][0] - now_ms) / 1000)))
    status.close()
    report.unlabelled += len(pending)
    remaining = producer.flush(60)
    report.seconds = time.monotonic() - started
    report.delivery_failures = len(failures) + remaining
    if report.delivery_failures:
        raise StreamAppError(
            f"{report.delivery_failures} records were not delivered to Kafka: {failures[:3]}"
        )
    return report


def _prime(
    world: World, producer: Producer, topic: str, reading_rate: float, rng: np.random.Generator
) -> int:
    """Readings of the recent past (the largest window, at the spec's interval), in time
    order, so the feature store starts as in a world that was already running, not empty."""
    horizon_ms = max(
        (f.window.size_ms for f in world.use_case.features_of(AggregateFeature).values()), default=0
    )
    count = int(reading_rate * horizon_ms / 1000)
    if count == 0:
        return 0
    now_ms = int(time.time() * 1000)
    times = np.sort(now_ms - rng.integers(0, horizon_ms, count))
    _produce(producer, topic, reading_records(world, world.readings(times)))
    return count


def _emit_events(
    world: World,
    producer: Producer,
    topic: str,
    n: int,
    now_ms: int,
    drifted: bool,
    rng: np.random.Generator,
    options: LiveOptions,
    report: LiveReport,
    pending: list[tuple[int, str, float]],
    first_seq: int,
) -> None:
    events = world.client_events(np.full(n, now_ms, dtype=np.int64), drifted=drifted)
    event_ids = [f"{report.run_id}-{first_seq + i}" for i in range(n)]
    records = client_event_records(world, events, event_ids)
    invalid = rng.random(n) < options.invalid_rate if options.invalid_rate else np.zeros(n, bool)
    for i in np.flatnonzero(invalid).tolist():
        code, value = corrupt(records[i][1], sum(report.invalid.values()))
        records[i] = (records[i][0], value)
        report.invalid[code] = report.invalid.get(code, 0) + 1
    _produce(producer, topic, records)
    report.client_events += n
    report.drifted_events += n if drifted else 0
    delays = (events.label_delays_ms * options.label_delay_factor).astype(np.int64).tolist()
    labels = events.labels.tolist()
    for i in np.flatnonzero(events.labelled & ~invalid).tolist():
        heapq.heappush(pending, (now_ms + delays[i], event_ids[i], labels[i]))
    report.unlabelled += int((~events.labelled & ~invalid).sum())


def _emit_labels(
    producer: Producer,
    topic: str,
    pending: list[tuple[int, str, float]],
    now_ms: int,
    report: LiveReport,
) -> None:
    ids, labels, times = [], [], []
    while pending and pending[0][0] <= now_ms:
        due, event_id, label = heapq.heappop(pending)
        ids.append(event_id)
        labels.append(label)
        times.append(due)
    if ids:
        _produce(producer, topic, list(ground_truth_records(ids, labels, times)))
        report.ground_truth += len(ids)


def _status(report: LiveReport, elapsed: float, pending: int) -> str:
    rate = report.client_events / elapsed if elapsed else 0.0
    return (
        f"[{elapsed:6.1f}s] client events {report.client_events:>9,} ({rate:,.0f}/s)  "
        f"readings {report.readings:>10,}  ground truth {report.ground_truth:>9,}  "
        f"labels pending {pending:>8,}"
    )
