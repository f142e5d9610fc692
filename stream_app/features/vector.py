"""Feature vectors in a model's column order, from a client event and stored features.

A pure function of its inputs: the scoring agent, history generation and replays all build
vectors here, so training sees exactly what serving computed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from stream_app.use_cases.spec import (
    AggregateFeature,
    BatchFeature,
    EventFeature,
    UseCase,
    parse_duration_ms,
)


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


class _Column(NamedTuple):
    name: str
    kind: str  # event, aggregate or batch
    source: str  # event field name, or entity key
    default: float


class FeatureVectorBuilder:
    """Builds vectors for one use case and one model's column order."""

    def __init__(self, use_case: UseCase, feature_names: list[str]) -> None:
        unknown = [n for n in feature_names if n not in use_case.features]
        if unknown:
            raise ValueError(f"features {unknown} are not in use case {use_case.name}")
        self.feature_names = list(feature_names)
        self.max_age_ms = parse_duration_ms(use_case.missing_features.max_age)
        columns = []
        for name in feature_names:
            feature = use_case.features[name]
            if isinstance(feature, EventFeature):
                columns.append(_Column(name, "event", feature.field or name, feature.default))
            elif isinstance(feature, AggregateFeature | BatchFeature):
                columns.append(_Column(name, feature.source, feature.entity, feature.default))
        self._columns = columns
        self.entity_keys = sorted({c.source for c in columns if c.kind != "event"})

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
        empty: EntityFeatures = {}
        for column in self._columns:
            value: float | None = None
            if column.kind == "event":
                raw = fields.get(column.source)
                if raw is not None:
                    value = float(raw)
            else:
                entity_id = entities.get(column.source)
                row = stored.get((column.source, entity_id), empty) if entity_id else empty
                found = row.get(column.name)
                if found is not None:
                    if column.kind == "batch":
                        value = found.value
                    elif now_ms - found.event_time <= self.max_age_ms:
                        value = found.value
                        oldest = min(oldest, found.event_time)
            if value is None:
                missing.append(column.name)
                value = column.default
            values.append(value)
        return ServedVector(values, missing, max(now_ms - oldest, 0))
