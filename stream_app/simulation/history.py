"""Labelled history: past client events with the feature vectors serving would have built.

For each past event the sensor readings of its entities inside each aggregate's served window
are simulated (their count from the spec's ``reading_interval``), aggregated as the feature
agent aggregates them, and turned into a vector by the same ``FeatureVectorBuilder`` the
scoring path uses.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from stream_app.features.vector import FeatureVectorBuilder, StoredFeature
from stream_app.features.windows import aggregate_rows
from stream_app.simulation.world import DAY_MS, Array, EventBatch, World
from stream_app.timeparse import parse_duration_ms
from stream_app.use_cases.spec import AggregateFeature

MAX_READINGS_PER_WINDOW = 640  # more readings than this in a window are subsampled
CHUNK_EVENTS = 5_000


@dataclass
class HistoryChunk:
    """Past events with their served vectors and their ground truth."""

    event_ids: list[str]
    events: EventBatch
    entity_ids: dict[str, list[str]]
    vectors: list[list[float]]
    missing: list[list[str]]
    ages_ms: list[int]

    def labelled_rows(self, until_ms: int) -> Array:
        """Indices of events whose ground truth arrived before ``until_ms``."""
        arrived = self.events.times_ms + self.events.label_delays_ms <= until_ms
        return np.flatnonzero(self.events.labelled & arrived)


def _window_groups(world: World) -> dict[tuple[str, int, int], list[tuple[str, AggregateFeature]]]:
    groups: dict[tuple[str, int, int], list[tuple[str, AggregateFeature]]] = {}
    for name, feature in world.use_case.features_of(AggregateFeature).items():
        key = (feature.entity, feature.window.size_ms, feature.window.step_ms)
        groups.setdefault(key, []).append((name, feature))
    return groups


def stored_aggregates(
    world: World, events: EventBatch, rng: np.random.Generator
) -> dict[str, tuple[Array, Array]]:
    """Per aggregate feature: the value stored for each event's entity at event time (NaN if
    the window held no reading) and the event time of the newest reading behind it."""
    # Live, every entity of the first reading key pings each reading_interval and each reading
    # also names one entity of every other key: those get proportionally more readings.
    interval_ms = parse_duration_ms(world.sim.reading_interval)
    pinging = world.sim.population[world.sim.reading_entities[0]]
    rows = len(events)
    t = events.times_ms
    result: dict[str, tuple[Array, Array]] = {}
    for (entity, size, step), features in _window_groups(world).items():
        start = ((t - size) // step + 1) * step
        span = np.maximum(t - start, 1)
        entity_interval = interval_ms * world.sim.population[entity] / pinging
        expected = span / entity_interval
        k = int(min(MAX_READINGS_PER_WINDOW, np.ceil(size / entity_interval * 1.5 + 10)))
        counts = np.minimum(rng.poisson(expected), k)
        offsets = np.sort(rng.random((rows, k)), axis=1)  # time order within each window
        times = (start[:, None] + offsets * span[:, None]).astype(np.int64)
        fixed = {entity: np.repeat(events.entities[entity], k)}
        readings = world.readings(times.ravel(), fixed=fixed, rng=rng, drifted=events.drifted)
        newest = times[np.arange(rows), np.maximum(counts - 1, 0)]
        for name, feature in features:
            values = readings.values[feature.reading].reshape(rows, k)
            result[name] = (aggregate_rows(values, counts, feature.function), newest)
        empty = np.flatnonzero(counts == 0)
        if size == step and len(empty):  # serving falls back to the previous tumbling window
            before = _previous_window(world, events, entity, start[empty] - size, size,
                                      entity_interval, k, rng, empty)  # fmt: skip
            for name, feature in features:
                values, last = result[name]
                values[empty] = aggregate_rows(before.values[feature.reading], before.counts,
                                               feature.function)  # fmt: skip
                last[empty] = before.newest
    return result


class _Window(NamedTuple):
    values: dict[str, Array]
    counts: Array
    newest: Array


def _previous_window(
    world: World, events: EventBatch, entity: str, starts: Array, size: int,
    entity_interval: float, k: int, rng: np.random.Generator, rows: Array | None = None,
) -> _Window:  # fmt: skip
    """Readings of whole windows ``[start, start + size)`` for some events' entities."""
    n = len(starts)
    counts = np.minimum(rng.poisson(np.full(n, size / entity_interval)), k)
    offsets = np.sort(rng.random((n, k)), axis=1)
    times = (starts[:, None] + offsets * size).astype(np.int64)
    index = np.flatnonzero(np.ones(len(events), dtype=bool)) if rows is None else rows
    fixed = {entity: np.repeat(events.entities[entity][index], k)}
    readings = world.readings(times.ravel(), fixed=fixed, rng=rng, drifted=events.drifted)
    return _Window(
        {name: values.reshape(n, k) for name, values in readings.values.items()},
        counts,
        times[np.arange(n), np.maximum(counts - 1, 0)],
    )


def history_chunks(
    world: World,
    start_ms: int,
    end_ms: int,
    run_id: str,
    drift_at_ms: int | None = None,
    events_per_day: int | None = None,
) -> Iterator[HistoryChunk]:
    """Events spread uniformly over ``[start_ms, end_ms)``, in chunks, oldest first."""
    per_day = events_per_day or world.sim.history_events_per_day
    total = round(per_day * (end_ms - start_ms) / 86_400_000)
    rng = np.random.default_rng([world.seed, 4])
    times = np.sort(rng.integers(start_ms, end_ms, total))
    builder = FeatureVectorBuilder(world.use_case, world.use_case.feature_names)
    batch_values = world.batch_features()
    for chunk_start in range(0, total, CHUNK_EVENTS):
        chunk_times = times[chunk_start : chunk_start + CHUNK_EVENTS]
        drifted_mask = (
            np.zeros(len(chunk_times), dtype=bool)
            if drift_at_ms is None
            else chunk_times >= drift_at_ms
        )
        parts = []
        for drifted in (False, True):
            selected = chunk_times[drifted_mask == drifted]
            if len(selected):
                parts.append(world.client_events(selected, drifted=drifted, rng=rng))
        for part_index, events in enumerate(parts):
            offset = chunk_start + sum(len(p) for p in parts[:part_index])
            yield _chunk(world, events, builder, batch_values, rng, run_id, offset)


def _chunk(
    world: World,
    events: EventBatch,
    builder: FeatureVectorBuilder,
    batch_values: dict[str, tuple[str, Array]],
    rng: np.random.Generator,
    run_id: str,
    offset: int,
) -> HistoryChunk:
    aggregates = stored_aggregates(world, events, rng)
    ids = {key: [world.ids[key][i] for i in idx] for key, idx in events.entities.items()}
    field_lists = {name: values.tolist() for name, values in events.fields.items()}
    aggregate_lists = {n: (v.tolist(), e.tolist()) for n, (v, e) in aggregates.items()}
    start_ms = int(events.times_ms.min())
    vectors, missing, ages = [], [], []
    times = events.times_ms.tolist()
    for i, now in enumerate(times):
        entities = {key: ids[key][i] for key in ids}
        stored: dict[tuple[str, str], dict[str, StoredFeature]] = {}
        for name, (values, newest) in aggregate_lists.items():
            value = values[i]
            if value == value:  # not NaN: the window held readings
                entity = world.use_case.features[name].entity  # type: ignore[union-attr]
                stored.setdefault((entity, entities[entity]), {})[name] = StoredFeature(
                    value, newest[i]
                )
        for name, (entity, per_entity) in batch_values.items():
            index = int(events.entities[entity][i])
            stored.setdefault((entity, entities[entity]), {})[name] = StoredFeature(
                float(per_entity[index]), start_ms
            )
        fields: dict[str, Any] = {name: values[i] for name, values in field_lists.items()}
        served = builder.build(fields, entities, stored, now)
        vectors.append(served.values)
        missing.append(served.missing)
        ages.append(served.age_ms)
    event_ids = [f"{run_id}-{offset + i}" for i in range(len(events))]
    return HistoryChunk(event_ids, events, ids, vectors, missing, ages)


def labelled_frame(
    world: World, start_ms: int, days: float, events_per_day: int, drift_at_ms: int | None = None
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Served vectors and true labels of ``days`` of simulated events (in memory)."""
    vectors: list[list[float]] = []
    labels: list[float] = []
    end_ms = start_ms + int(days * DAY_MS)
    for chunk in history_chunks(world, start_ms, end_ms, "frame", drift_at_ms, events_per_day):
        vectors += chunk.vectors
        labels += chunk.events.labels.tolist()
    return np.array(vectors), np.array(labels)
