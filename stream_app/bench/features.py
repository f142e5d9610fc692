"""`stream-app bench features` and `stream-app bench freshness`.

features: sensor readings merged per second by the feature agent (`stream-app worker` with
only the features agent) against a naive Faust agent that awaits one Cassandra write per
reading and pane, on the same pre-produced readings, in the same run. Rates are read from
each process's own `/metrics` counter, between 5% and 95% of its readings.

freshness: a worker with both agents and readings produced at a fixed rate. Probe readings
(a distinctive value for a probe courier) are timed from their Kafka CreateTime until their
pane in Cassandra shows them ("visible"), and until a prediction for that courier was made
with that value in its served vector ("used", read back from the prediction log).
"""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import orjson
from confluent_kafka import Producer

from stream_app.bench.e2e import (
    bench_settings,
    create_topics,
    delete_topics,
    percentile,
    process_failure,
    settings_env,
    stop_process,
)
from stream_app.cassandra_session import connected
from stream_app.features.pane_store import PaneStore
from stream_app.features.panes import PaneKey, aggregate_groups
from stream_app.kafka.producer import produce_when_room
from stream_app.provisioning.keyspace import ensure_keyspace
from stream_app.settings import Settings
from stream_app.simulation.payloads import client_event_records, reading_records
from stream_app.simulation.seeded import preload_features, prepare_model
from stream_app.simulation.world import World
from stream_app.storage.predictions import PredictionStore
from stream_app.use_cases.spec import UseCase


def _produce(settings: Settings, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = Producer(settings.kafka.client_config({"linger.ms": 20}))
    for i, (key, value) in enumerate(records):
        produce_when_room(producer, topic, value, key)
        if i % 10_000 == 0:
            producer.poll(0)
    producer.flush(120)


def _metric(port: int, name: str, topic: str) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return None
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and f'topic="{topic}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def _rate(
    process: subprocess.Popen[bytes],
    port: int,
    topic: str,
    count: int,
    timeout_s: float,
    log: Path,
) -> float:
    """Readings/s between 5% and 95% of ``count``, from the process's own counter."""
    low, high = 0.05 * count, 0.95 * count
    t_low = t_high = None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and t_high is None:
        if process.poll() is not None:
            raise process_failure(f"the process exited with {process.returncode}", log)
        value = _metric(port, "stream_app_events_in_total", topic)
        now = time.monotonic()
        if value is not None:
            if t_low is None and value >= low:
                t_low, v_low = now, value
            if t_low is not None and value >= high:
                t_high, v_high = now, value
        time.sleep(0.02)
    if t_low is None or t_high is None or t_high <= t_low:
        return float("nan")
    return (v_high - v_low) / (t_high - t_low)


def rounded(value: float, digits: int | None = None) -> float | None:
    """``round(value)``, or None for a figure that could not be measured (NaN)."""
    if not math.isfinite(value):
        return None
    return round(value, digits) if digits is not None else round(value)


def _start(
    command: list[str], settings: Settings, extra: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    env = {**os.environ, **settings_env(settings), **extra}
    return subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT)


def run_features(
    settings: Settings,
    use_case: UseCase,
    readings: int,
    naive_readings: int,
    progress: TextIO = sys.stderr,
) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:6]
    world = World(use_case, 3)
    now = int(time.time() * 1000)
    times = now - np.random.default_rng(2).integers(0, 120_000, readings)
    records = reading_records(world, world.readings(np.sort(times)))
    log_dir = settings.services.home.resolve() / "bench" / f"features-{run_id}"
    log_dir.mkdir(parents=True, exist_ok=True)
    rates = {}
    for kind, count in (("agent", readings), ("naive", naive_readings)):
        bench = bench_settings(settings, run_id, f"f{kind}")
        ensure_keyspace(bench.cassandra)
        create_topics(bench)
        try:
            _produce(bench, bench.kafka.topics.sensor_readings, records[:count])
            if kind == "agent":
                command = [sys.executable, "-m", "stream_app.main", "worker"]
                extra = {"STREAM_APP_WORKER__AGENTS": '["features"]'}
            else:
                command = [sys.executable, "-m", "stream_app.bench.baselines", "naive-features"]
                extra = {}
            process = _start(command, bench, extra, log_dir / f"{kind}.log")
            try:
                rates[kind] = _rate(
                    process, bench.worker.web_port, bench.kafka.topics.sensor_readings, count, 900,
                    log_dir / f"{kind}.log",
                )  # fmt: skip
            finally:
                stop_process(process)
        finally:
            delete_topics(bench)
        progress.write(f"{kind:>6}: {rates[kind]:,.0f} readings/s\n")
    return {
        "benchmark": "features",
        "readings": readings,
        "naive_readings": naive_readings,
        # None where a run was too short to time (its readings arrived in one step)
        "agent_readings_per_s": rounded(rates["agent"]),
        "naive_readings_per_s": rounded(rates["naive"]),
        "agent_vs_naive": rounded(rates["agent"] / rates["naive"], 1),
        "targets_met": {
            "agent >= 20000 readings/s": rates["agent"] >= 20_000,
            "agent >= 5 x naive": rates["agent"] >= 5 * rates["naive"],
        },
    }


@dataclass
class Probe:
    courier: str
    value: float
    created_ms: int
    partition: int = -1
    offset: int = -1
    visible_ms: int | None = None


def run_freshness(
    settings: Settings,
    use_case: UseCase,
    rate: float,
    seconds: float,
    progress: TextIO = sys.stderr,
    warmup_s: float = 10.0,
) -> dict[str, Any]:
    """Probe freshness under ``rate`` readings/s of background traffic, after ``warmup_s``
    at that rate (not counted)."""
    run_id = uuid.uuid4().hex[:6]
    bench = bench_settings(settings, run_id, "fresh")
    ensure_keyspace(bench.cassandra)
    create_topics(bench)
    world = World(use_case, 4)
    log_dir = settings.services.home.resolve() / "bench" / f"freshness-{run_id}"
    log_dir.mkdir(parents=True, exist_ok=True)
    process = None
    try:
        with connected(bench.cassandra) as session:
            prepare_model(session, bench, use_case, 4)
            preload_features(session, bench, world)
            log = log_dir / "worker.log"
            process = _start([sys.executable, "-m", "stream_app.main", "worker"], bench, {}, log)
            # warm up at the measured rate until probes show up promptly; not counted
            warmup = _drive(bench, world, rate, warmup_s, session, progress, value_base=100_000.0)
            if not any(p.visible_ms for p in warmup):
                raise process_failure("the worker never merged a reading", log)
            probes = _drive(bench, world, rate, seconds, session, progress)
            time.sleep(3)  # let the last predictions land
            stop_process(process)
            process = None
            used = _first_use(session, bench, use_case, probes)
    finally:
        if process is not None:
            stop_process(process)
        delete_topics(bench)
    visible = [p.visible_ms - p.created_ms for p in probes if p.visible_ms is not None]
    used_latencies = [u for u in used if u is not None]
    return {
        "benchmark": "freshness",
        "readings_per_s": rate,
        "seconds": seconds,
        "probes": len(probes),
        "visible_probes": len(visible),
        "visible_p50_ms": percentile(visible, 50),
        "visible_p99_ms": percentile(visible, 99),
        "used_probes": len(used_latencies),
        "used_p50_ms": percentile(used_latencies, 50),
        "used_p99_ms": percentile(used_latencies, 99),
        "feature_cache_ms": settings.scoring.feature_cache_ms,
        "targets_met": {"visible_p99_ms <= 1000": percentile(visible, 99) <= 1000},
    }


PROBE_COURIERS = 5
PROBE_EVERY_S = 0.25
EVENT_EVERY_S = 0.05


def _drive(
    settings: Settings,
    world: World,
    rate: float,
    seconds: float,
    session: Any,
    progress: TextIO,
    value_base: float = 100.0,
) -> list[Probe]:
    """Background readings at ``rate``, probe readings, and client events for the probe
    couriers; a thread polls Cassandra until each probe is visible."""
    topics = settings.kafka.topics
    producer = Producer(settings.kafka.client_config({"linger.ms": 5}))
    probes: list[Probe] = []
    outstanding: list[Probe] = []
    lock = threading.Lock()
    stop = threading.Event()
    panes = PaneStore(session, settings.cassandra.keyspace, world.use_case.name, 3600)
    group = next(g for g in aggregate_groups(world.use_case) if g.entity_key == "courier_id")

    def poll() -> None:
        while not stop.is_set() or outstanding:
            with lock:
                waiting = [p for p in outstanding if p.offset >= 0]
            keys = {}
            for p in waiting:
                pane = p.created_ms - p.created_ms % group.pane_ms
                keys[PaneKey("courier_id", p.courier, group.name, pane, p.partition)] = p
            found = asyncio.run(panes.load(keys)) if keys else {}
            now = int(time.time() * 1000)
            with lock:
                for key, probe in keys.items():
                    state = found.get(key)
                    if state is not None and state.max_offset >= probe.offset:
                        probe.visible_ms = now
                        outstanding.remove(probe)
            time.sleep(0.01)
            if stop.is_set() and time.monotonic() > stop_deadline[0]:
                return

    stop_deadline = [float("inf")]
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    rate * 0.01
    started = time.monotonic()
    sent = 0.0
    next_probe = next_event = started
    probe_index = 0
    event_index = 0
    while (elapsed := time.monotonic() - started) < seconds:
        due = int(rate * elapsed) - int(sent)
        if due > 0:
            times = np.full(due, int(time.time() * 1000), dtype=np.int64)
            for key, value in reading_records(world, world.readings(times)):
                producer.produce(topics.sensor_readings, value, key)
            sent += due
        now = time.monotonic()
        if now >= next_probe:
            courier = f"probe-{probe_index % PROBE_COURIERS}"
            probe = Probe(courier, value_base + probe_index, int(time.time() * 1000))
            payload = {
                "schema_version": 1, "sensor_id": f"gps-{courier}", "event_time": probe.created_ms,
                "entities": {"courier_id": courier, "zone_id": "zone-0"},
                "values": {"speed_kmh": probe.value},
            }  # fmt: skip

            def delivered(err: Any, message: Any, probe: Probe = probe) -> None:
                if err is None:
                    with lock:
                        probe.partition, probe.offset = message.partition(), message.offset()
                        probe.created_ms = message.timestamp()[1]

            producer.produce(topics.sensor_readings, orjson.dumps(payload),
                             f"gps-{courier}".encode(), on_delivery=delivered)  # fmt: skip
            with lock:
                probes.append(probe)
                outstanding.append(probe)
            probe_index += 1
            next_probe += PROBE_EVERY_S
        if now >= next_event:
            events = world.client_events(
                np.full(PROBE_COURIERS, int(time.time() * 1000), dtype=np.int64)
            )
            records = client_event_records(
                world,
                events,
                [
                    f"probe-event-{settings.worker.app_id}-{value_base:.0f}-{event_index}-{c}"
                    for c in range(PROBE_COURIERS)
                ],
            )
            for c, (key, value) in enumerate(records):
                event = orjson.loads(value)
                event["entities"]["courier_id"] = f"probe-{c}"
                producer.produce(topics.client_events, orjson.dumps(event), key)
            event_index += 1
            next_event += EVENT_EVERY_S
        producer.poll(0)
        time.sleep(0.005)
    producer.flush(60)
    stop_deadline[0] = time.monotonic() + 10
    stop.set()
    poller.join(timeout=15)
    progress.write(f"{len(probes)} probes, {int(sent):,} readings in {seconds:.0f} s\n")
    return probes


def _first_use(
    session: Any, settings: Settings, use_case: UseCase, probes: list[Probe]
) -> list[float | None]:
    """Per probe: ms from its CreateTime to the first prediction for its courier that was
    served its value (as ``courier_speed_last``)."""
    store = PredictionStore(session, settings.cassandra.keyspace, use_case.name)
    start = min(p.created_ms for p in probes) - 60_000
    end = int(time.time() * 1000) + 1
    column = use_case.feature_names.index("courier_speed_last")
    first_seen: dict[float, int] = {}
    prefix = f"probe-event-{settings.worker.app_id}-"
    for row in store.scan(start, end):
        if not row.event_id.startswith(prefix):
            continue
        value = float(row.features[column])
        if value >= 100.0 and (value not in first_seen or row.scored_ms < first_seen[value]):
            # probe values are unique (real speeds stay below 100 km/h)
            first_seen[value] = row.scored_ms
    return [
        float(first_seen[p.value] - p.created_ms) if p.value in first_seen else None for p in probes
    ]
