"""Features of past events, point in time, by the code that serves them live.

Past sensor readings are merged in event-time order into panes by the feature agent's
``PaneAggregator``; at each past event's time the windows are valued by ``window_values`` (what
the scoring path serves from the stored panes), and batch features are the version loaded
before that time. So a vector built here for an event at ``t`` is the vector the live worker
serves for it from the same readings, with the use case's ``features_at``:

- ``now`` (live traffic, scored as it happens): the windows as they stand at ``t``, their
  newest pane still filling; every reading before ``t`` counts, none at or after it;
- ``event_time`` (a stream replayed from the past): the windows complete at ``t``, up to one
  window step behind it, so no reading at or after ``t`` can count, however late the event
  is scored.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from stream_app.contracts.decode import SensorReading
from stream_app.features.panes import (
    AggregateGroup,
    PaneAggregator,
    PaneKey,
    aggregate_groups,
    window_values,
)
from stream_app.features.vector import StoredFeature
from stream_app.features.windows import RunningAggregate, served_window_start
from stream_app.use_cases.spec import BatchFeature, UseCase

EntityKey = tuple[str, str]
SOURCE_PARTITION = 0  # past readings are one ordered stream


@dataclass
class BatchVersions:
    """Every loaded version of the batch features: ``(valid from, value)`` oldest first, per
    (entity key, entity id, feature)."""

    versions: dict[tuple[str, str, str], list[tuple[int, float]]]

    def as_of(self, entity: EntityKey, feature: str, at_ms: int) -> StoredFeature | None:
        """The version valid at ``at_ms`` (the newest loaded at or before it)."""
        found = self.versions.get((entity[0], entity[1], feature))
        if not found:
            return None
        index = bisect.bisect_right(found, (at_ms, float("inf"))) - 1
        if index < 0:
            return None
        valid_from, value = found[index]
        return StoredFeature(value, valid_from)


class PointInTimeFeatures:
    """Replays past readings and answers "what was served for this entity at t"."""

    def __init__(self, use_case: UseCase, batch: BatchVersions | None = None) -> None:
        self.complete_panes_only = use_case.serving.features_at == "event_time"
        self.groups = aggregate_groups(use_case)
        self.aggregator = PaneAggregator(self.groups)
        self.batch = batch or BatchVersions({})
        self._groups_of: dict[str, list[AggregateGroup]] = {}
        for group in self.groups:
            self._groups_of.setdefault(group.entity_key, []).append(group)
        self._batch_features: dict[str, list[str]] = {}
        for name, feature in use_case.features_of(BatchFeature).items():
            self._batch_features.setdefault(feature.entity, []).append(name)
        self._panes_of: dict[EntityKey, set[PaneKey]] = {}
        self._changes: dict[EntityKey, int] = {}  # bumped when a reading of the entity merges
        self._memo: dict[tuple[EntityKey, tuple[int, ...]], tuple[int, dict[str, StoredFeature]]]
        self._memo = {}
        self._offset = 0
        self.now = -(2**62)
        self.readings = 0
        # a tumbling window with no reading yet serves the one before: two sizes back
        horizon = max((2 * g.horizon_ms + g.pane_ms for g in self.groups), default=0)
        self._horizon_ms = horizon + max((g.lateness_ms for g in self.groups), default=0)

    def advance(self, readings: Iterable[SensorReading]) -> None:
        """Merge readings (in event-time order) into the panes, as the feature agent does."""
        for reading in readings:
            pairs = [(SOURCE_PARTITION, reading)]
            self.aggregator.load(self.aggregator.unknown_panes(pairs), {})
            self.aggregator.apply(SOURCE_PARTITION, self._offset, reading)
            self._offset += 1
            self.readings += 1
            for group in self.groups:
                entity_id = reading.entities.get(group.entity_key)
                if entity_id is None:
                    continue
                entity = (group.entity_key, entity_id)
                start = reading.event_time - reading.event_time % group.pane_ms
                key = PaneKey(group.entity_key, entity_id, group.name, start, SOURCE_PARTITION)
                self._panes_of.setdefault(entity, set()).add(key)
                self._changes[entity] = self._changes.get(entity, 0) + 1
            self.now = max(self.now, reading.event_time)
        self.aggregator.take_dirty()  # nothing is written: forget what changed

    def forget_before(self, at_ms: int) -> None:
        """Drop panes no window served at or after ``at_ms`` can hold (bounded memory)."""
        oldest = at_ms - self._horizon_ms
        for entity, keys in list(self._panes_of.items()):
            gone = {key for key in keys if key.pane_start < oldest}
            for key in gone:
                self.aggregator.panes.pop(key, None)
            keys -= gone
            if not keys:
                del self._panes_of[entity]
        self._memo.clear()

    def _windows(self, entity: EntityKey, at_ms: int) -> dict[str, StoredFeature]:
        groups = self._groups_of.get(entity[0], [])
        if not groups or entity not in self._panes_of:
            return {}
        served = tuple(
            served_window_start(at_ms, f.size_ms, f.step_ms) for g in groups for f in g.features
        )
        version = self._changes.get(entity, 0)
        cached = self._memo.get((entity, served))
        if cached is not None and cached[0] == version:
            return cached[1]
        panes: dict[tuple[str, int], list[RunningAggregate]] = {}
        for key in self._panes_of[entity]:
            state = self.aggregator.panes.get(key)
            if state is not None:
                panes.setdefault((key.aggregate, key.pane_start), []).append(state.aggregate)
        values = window_values(groups, panes, at_ms, self.complete_panes_only)
        self._memo[(entity, served)] = (version, values)
        return values

    def served(
        self, entities: Mapping[str, str], keys: Sequence[str], at_ms: int
    ) -> dict[EntityKey, dict[str, StoredFeature]]:
        """The stored features of an event's entities as the scoring path reads them at
        ``at_ms``: windows from the readings merged so far, batch features valid then."""
        found: dict[EntityKey, dict[str, StoredFeature]] = {}
        for key in keys:
            entity_id = entities.get(key)
            if entity_id is None:
                continue
            entity = (key, entity_id)
            features = dict(self._windows(entity, at_ms))
            for name in self._batch_features.get(key, []):
                version = self.batch.as_of(entity, name, at_ms)
                if version is not None:
                    features[name] = version
            found[entity] = features
        return found
