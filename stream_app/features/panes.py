"""Windowed aggregates as panes: pure logic, no I/O.

A window of ``size`` every ``step`` is the union of its ``size / step`` panes (tumbling
sub-windows of length ``step``). Readings update exactly one pane per aggregate; a window's
value is the merge of its panes when it is read. Features that aggregate the same reading of
the same entity with the same step share their panes (an ``AggregateGroup``).

Event time: a reading belongs to the pane of its own time, whenever it arrives. Each source
partition has a watermark, the newest event time seen in it; a reading is late when every
window that could contain it closed (window end + allowed lateness) before that watermark.
Late readings are counted and not merged. Each pane also remembers the highest source offset
merged into it, so a reading seen again (restart, replay) is never counted twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

from stream_app.contracts.decode import SensorReading
from stream_app.features.vector import StoredFeature
from stream_app.features.windows import RunningAggregate, served_window_start
from stream_app.timeparse import parse_duration_ms
from stream_app.use_cases.spec import AggregateFeature, UseCase

NEVER = -(2**62)


class WindowedFeature(NamedTuple):
    name: str
    function: str
    size_ms: int
    step_ms: int


@dataclass(frozen=True)
class AggregateGroup:
    """Features sharing panes: one entity key, one reading, one window step."""

    entity_key: str
    reading: str
    pane_ms: int
    horizon_ms: int  # the largest window: how long a pane matters
    lateness_ms: int  # the most lateness any of its features allows
    features: tuple[WindowedFeature, ...]

    @cached_property
    def name(self) -> str:
        return f"{self.reading}/{self.pane_ms}"


def aggregate_groups(use_case: UseCase) -> list[AggregateGroup]:
    """The pane groups of a use case's windowed features."""
    grouped: dict[tuple[str, str, int], list[tuple[WindowedFeature, int]]] = {}
    for name, feature in use_case.features_of(AggregateFeature).items():
        window = feature.window
        key = (feature.entity, feature.reading, window.step_ms)
        item = WindowedFeature(name, feature.function, window.size_ms, window.step_ms)
        grouped.setdefault(key, []).append((item, parse_duration_ms(feature.allowed_lateness)))
    return [
        AggregateGroup(
            entity_key=entity,
            reading=reading,
            pane_ms=step,
            horizon_ms=max(f.size_ms for f, _ in items),
            lateness_ms=max(lateness for _, lateness in items),
            features=tuple(f for f, _ in items),
        )
        for (entity, reading, step), items in grouped.items()
    ]


class PaneKey(NamedTuple):
    entity_key: str
    entity_id: str
    aggregate: str
    pane_start: int
    partition: int


@dataclass(slots=True)
class PaneState:
    """A pane's aggregate and the highest source offset merged into it."""

    aggregate: RunningAggregate = field(default_factory=RunningAggregate)
    max_offset: int = -1


def merge(states: Iterable[RunningAggregate]) -> RunningAggregate:
    """One aggregate of many (panes of a window, partitions of a pane)."""
    merged = RunningAggregate()
    for state in states:
        merged.merge(state)
    return merged


class ApplyResult(NamedTuple):
    merged: int
    late: int
    duplicates: int


class PaneAggregator:
    """The pane states of the source partitions one worker owns, in memory."""

    def __init__(self, groups: list[AggregateGroup]) -> None:
        self.groups = groups
        self.by_key = {(g.entity_key, g.name): g for g in groups}
        self.panes: dict[PaneKey, PaneState] = {}
        self.watermarks: dict[int, int] = {}
        self._dirty: set[PaneKey] = set()

    def _targets(
        self, reading: SensorReading, partition: int
    ) -> Iterable[tuple[AggregateGroup, PaneKey, float]]:
        """The panes a reading updates (one per group it has an entity and a value for)."""
        t = reading.event_time
        for group in self.groups:
            entity_id = reading.entities.get(group.entity_key)
            value = reading.values.get(group.reading)
            if entity_id is None or value is None:
                continue
            pane_start = t - t % group.pane_ms
            yield (
                group,
                PaneKey(group.entity_key, entity_id, group.name, pane_start, partition),
                value,
            )

    def is_late(self, key: PaneKey) -> bool:
        """Every window holding this pane closed before its partition's watermark."""
        group = self.by_key[(key.entity_key, key.aggregate)]
        closes = key.pane_start + group.horizon_ms + group.lateness_ms
        return closes <= self.watermarks.get(key.partition, NEVER)

    def unknown_panes(self, readings: Iterable[tuple[int, SensorReading]]) -> set[PaneKey]:
        """Panes a batch will touch that are not in memory (to load from the store first)."""
        wanted = set()
        for partition, reading in readings:
            for _, key, _ in self._targets(reading, partition):
                if key not in self.panes:
                    wanted.add(key)
        return wanted

    def load(self, keys: Iterable[PaneKey], stored: Mapping[PaneKey, PaneState]) -> None:
        """Take the stored state of ``keys`` (an empty pane where nothing is stored)."""
        for key in keys:
            if key not in self.panes:
                self.panes[key] = stored.get(key) or PaneState()

    def apply(self, partition: int, offset: int, reading: SensorReading) -> ApplyResult:
        """Merge one reading (its panes must be loaded). Readings of a partition come in
        offset order."""
        merged = late = duplicates = 0
        watermark_before = self.watermarks.get(partition, NEVER)
        for group, key, value in self._targets(reading, partition):
            if key.pane_start + group.horizon_ms + group.lateness_ms <= watermark_before:
                late += 1
                continue
            state = self.panes[key]
            if offset <= state.max_offset:
                duplicates += 1
                continue
            state.aggregate.add(float(value), reading.event_time)
            state.max_offset = offset
            self._dirty.add(key)
            merged += 1
        if reading.event_time > watermark_before:
            self.watermarks[partition] = reading.event_time
        return ApplyResult(merged, late, duplicates)

    def take_dirty(self) -> list[tuple[PaneKey, PaneState]]:
        """Panes changed since the last call (to write), and forget that they changed."""
        dirty = [(key, self.panes[key]) for key in self._dirty]
        self._dirty.clear()
        return dirty

    def evict_closed(self) -> int:
        """Forget panes no open window holds any more (they are written already)."""
        closed = [key for key in self.panes if key not in self._dirty and self.is_late(key)]
        for key in closed:
            del self.panes[key]
        return len(closed)

    def drop_partitions(self, partitions: Iterable[int]) -> None:
        """Forget the state of partitions given to another worker."""
        gone = set(partitions)
        self.panes = {k: v for k, v in self.panes.items() if k.partition not in gone}
        self._dirty = {k for k in self._dirty if k.partition not in gone}
        for partition in gone:
            self.watermarks.pop(partition, None)


StoredPanes = Mapping[tuple[str, int], list[RunningAggregate]]  # (aggregate, pane start)


def window_values(
    groups: Iterable[AggregateGroup],
    panes: StoredPanes,
    at_ms: int,
    complete_panes_only: bool = False,
) -> dict[str, StoredFeature]:
    """Each windowed feature of one entity at ``at_ms``: the merge of the panes of one window.

    Live (serving): the window served at ``at_ms`` (``windows.served_window_start``: the
    oldest open one, its newest pane still filling); a tumbling window that has no reading yet
    (it has just begun) serves the window before it, so a feature does not go missing at
    every window boundary. Point in time (``complete_panes_only``): the newest window complete
    at ``at_ms``, so no reading newer than ``at_ms`` can count. A window without readings has
    no value (the feature is missing).
    """
    values: dict[str, StoredFeature] = {}
    for group in groups:
        windows: dict[tuple[int, int], RunningAggregate] = {}  # merged once per window
        for feature in group.features:
            if complete_panes_only:
                start = at_ms - at_ms % feature.step_ms - feature.size_ms
            else:
                start = served_window_start(at_ms, feature.size_ms, feature.step_ms)
            merged = _shared(windows, group, panes, start, feature.size_ms)
            tumbling = feature.size_ms == feature.step_ms
            if merged.count == 0 and tumbling and not complete_panes_only:
                merged = _shared(windows, group, panes, start - feature.size_ms, feature.size_ms)
            value = merged.value(feature.function) if merged.count else None
            if value is not None:
                values[feature.name] = StoredFeature(value, merged.last_time)
    return values


def _shared(
    windows: dict[tuple[int, int], RunningAggregate],
    group: AggregateGroup,
    panes: StoredPanes,
    start: int,
    size: int,
) -> RunningAggregate:
    """The merged window of ``group`` from ``start``, merged once for the features sharing it
    (read only: a merged aggregate is never changed after)."""
    if (start, size) not in windows:
        windows[(start, size)] = _window(group, panes, start, size)
    return windows[(start, size)]


def _window(group: AggregateGroup, panes: StoredPanes, start: int, size: int) -> RunningAggregate:
    name = group.name
    states: list[RunningAggregate] = []
    for pane_start in range(start, start + size, group.pane_ms):
        states.extend(panes.get((name, pane_start), ()))
    return merge(states)
