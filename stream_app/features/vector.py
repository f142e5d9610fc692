"""Feature vectors in a model's column order, from a client event and stored features.

A pure function of its inputs: the scoring agent, history generation and replays all build
vectors here, so training sees exactly what serving computed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from stream_app.timeparse import parse_duration_ms
from stream_app.use_cases.spec import AggregateFeature, BatchFeature, EventFeature, UseCase


class StoredFeature(NamedTuple):
    """A feature value read from the store, with the event time of its newest input."""

    value: float
    event_time: int


# Stored features of one entity, by feature name; all entities, by (entity key, entity id).
EntityFeatures = Mapping[str, StoredFeature]
StoredFeatures = Mapping[tuple[str, str], EntityFeatures]


class ServedVector(NamedTuple):
    """What a model is given for one event."""

    values: list[float]
    missing: list[str]  # features replaced by their defaults
    age_ms: int  # age of the oldest streaming feature used (0 if none)


_EVENT, _AGGREGATE, _BATCH = 0, 1, 2
_EMPTY: EntityFeatures = {}


class FeatureVectorBuilder:
    """Builds vectors for one use case and one model's column order."""

    def __init__(self, use_case: UseCase, feature_names: list[str]) -> None:
        unknown = [n for n in feature_names if n not in use_case.features]
        if unknown:
            raise ValueError(f"features {unknown} are not in use case {use_case.name}")
        self.feature_names = list(feature_names)
        self.max_age_ms = parse_duration_ms(use_case.missing_features.max_age)
        # (name, kind, event field or entity key, default) per column, in model order
        self._columns: list[tuple[str, int, str, float]] = []
        for name in feature_names:
            feature = use_case.features[name]
            if isinstance(feature, EventFeature):
                self._columns.append((name, _EVENT, feature.field or name, feature.default))
            elif isinstance(feature, AggregateFeature):
                self._columns.append((name, _AGGREGATE, feature.entity, feature.default))
            elif isinstance(feature, BatchFeature):
                self._columns.append((name, _BATCH, feature.entity, feature.default))
        self.entity_keys = sorted({c[2] for c in self._columns if c[1] != _EVENT})

    def build(
        self,
        fields: Mapping[str, float | int | bool | None],
        entities: Mapping[str, str],
        stored: StoredFeatures,
        now_ms: int,
    ) -> ServedVector:
        """The vector for one event: event fields, then stored features, defaults if missing.

        A streaming (aggregate) feature older than the spec's ``max_age`` counts as missing;
        batch features are expected to be old and are used as long as they exist.
        """
        values: list[float] = []
        missing: list[str] = []
        oldest = now_ms
        max_age = self.max_age_ms
        rows: dict[str, EntityFeatures] = {}
        for name, kind, source, default in self._columns:
            if kind == _EVENT:
                raw = fields.get(source)
                if raw is not None:
                    values.append(float(raw))
                    continue
            else:
                row = rows.get(source)
                if row is None:
                    entity_id = entities.get(source)
                    row = rows[source] = (
                        stored.get((source, entity_id), _EMPTY) if entity_id else _EMPTY
                    )
                found = row.get(name)
                if found is not None:
                    if kind == _BATCH:
                        values.append(found[0])
                        continue
                    if now_ms - found[1] <= max_age:
                        values.append(found[0])
                        if found[1] < oldest:
                            oldest = found[1]
                        continue
            missing.append(name)
            values.append(default)
        return ServedVector(values, missing, max(now_ms - oldest, 0))
