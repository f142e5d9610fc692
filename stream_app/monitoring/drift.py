"""Streaming drift per model version: PSI and KS of served features and of predictions against
the training distributions stored with the model (pure; no I/O).

A model's reference is, per feature, the bin edges (deciles of the training data) and the
share of training rows in each bin, overall and per UTC hour of day. Served vectors are counted
into the same bins, in time buckets, so the live distribution is a sliding window.

The expected distribution is seasonal: the training shares of the hours the window's events
come from, weighted like the window (hours without training rows fall back to the overall
shares). A window of ten minutes is then compared with the training data of those ten minutes
of the day, so features that follow the daily cycle (traffic, temperature) do not raise false
alarms, while a real change does.

PSI = sum (a - e) ln(a / e) over bins (shares smoothed with a small epsilon); KS is the largest
gap between the two cumulative distributions at the bin edges (a binned KS statistic).

A feature of an entity (a zone's traffic, a courier's speed) has as many independent values in
a window as entities were served: with fewer than ``min_entities`` (a dozen zones, say) it
cannot be compared with a distribution, and its PSI and KS are reported as missing, with the
entity count, rather than as a false alarm. Event fields count every event.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]
BUCKET_MS = 10_000
EPSILON = 1e-4
PREDICTION = "prediction"


def psi(expected: Array, actual_counts: Array) -> float:
    """Population stability index of live counts against reference shares."""
    total = actual_counts.sum()
    if total == 0:
        return float("nan")
    e = np.asarray(expected, dtype=float) + EPSILON
    a = actual_counts / total + EPSILON
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))


def ks(expected: Array, actual_counts: Array) -> float:
    """Largest gap between the cumulative reference and live distributions over the bins."""
    total = actual_counts.sum()
    if total == 0:
        return float("nan")
    return float(np.max(np.abs(np.cumsum(expected) - np.cumsum(actual_counts / total))))


@dataclass
class Reference:
    """One distribution of the training data: bin edges, the share in each bin, and the
    shares within each UTC hour (``None`` for hours without training rows)."""

    edges: Array
    shares: Array
    hourly: list[Array | None] | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Reference:
        hourly = data.get("hourly")
        return cls(
            np.asarray(data["edges"], dtype=float),
            np.asarray(data["shares"], dtype=float),
            None if hourly is None else [None if h is None else np.asarray(h) for h in hourly],
        )

    def expected(self, hour_counts: Array) -> Array:
        """The training shares for a window whose events fall in these hours."""
        total = hour_counts.sum()
        if self.hourly is None or total == 0:
            return self.shares
        mixture = np.zeros(len(self.shares))
        for hour, count in enumerate(hour_counts):
            if count:
                shares = self.hourly[hour]
                mixture += count / total * (self.shares if shares is None else shares)
        return mixture

    def counts(self, values: Array) -> Array:
        """How many values fall in each bin (outside the training range: the end bins)."""
        bins = len(self.shares)
        values = values[np.isfinite(values)]
        index = np.clip(np.searchsorted(self.edges, values, side="right") - 1, 0, bins - 1)
        return np.bincount(index, minlength=bins).astype(float)


ENTITY_CAP = 1_000  # distinct entities remembered per entity key and bucket


@dataclass
class _Window:
    second: int
    counts: dict[str, Array] = field(default_factory=dict)
    hours: Array = field(default_factory=lambda: np.zeros(24))
    entities: dict[str, set[str]] = field(default_factory=dict)


class ModelDrift:
    """The sliding window of one model version's served features and predictions."""

    def __init__(
        self,
        feature_names: list[str],
        distributions: dict[str, Any],
        monitored: set[str],
        window_ms: int,
        min_entities: int = 1,
        feature_entities: dict[str, str] | None = None,
    ) -> None:
        references = distributions.get("features", {})
        self.columns = {
            name: (index, Reference.from_json(references[name]))
            for index, name in enumerate(feature_names)
            if name in references and name in monitored and len(references[name]["shares"]) > 1
        }
        self.prediction = (
            Reference.from_json(distributions["prediction"])
            if distributions.get("prediction")
            else None
        )
        self.window_ms = window_ms
        self.min_entities = min_entities
        self.feature_entities = feature_entities or {}  # feature -> its entity key
        self._buckets: deque[_Window] = deque()

    @property
    def has_reference(self) -> bool:
        return bool(self.columns) or self.prediction is not None

    def observe(
        self,
        matrix: Array,
        predictions: Array,
        at_ms: int,
        event_times_ms: Array | None = None,
        entity_ids: dict[str, list[str]] | None = None,
    ) -> None:
        """Count one scored batch: rows of served vectors, one prediction per row, the events'
        times (the seasonal reference; default: ``at_ms``) and their entity ids by key."""
        second = at_ms // BUCKET_MS
        if not self._buckets or self._buckets[-1].second < second:
            self._buckets.append(_Window(second))
        bucket = self._buckets[-1]
        times = np.full(len(matrix), at_ms) if event_times_ms is None else event_times_ms
        hours = (np.asarray(times, dtype=np.int64) // 3_600_000) % 24
        bucket.hours += np.bincount(hours, minlength=24)
        for name, (index, reference) in self.columns.items():
            counts = reference.counts(matrix[:, index])
            bucket.counts[name] = bucket.counts.get(name, 0) + counts
        for key, ids in (entity_ids or {}).items():
            seen = bucket.entities.setdefault(key, set())
            if len(seen) < ENTITY_CAP:
                seen.update(ids[:ENTITY_CAP])
        if self.prediction is not None:
            counts = self.prediction.counts(np.asarray(predictions, dtype=float))
            bucket.counts[PREDICTION] = bucket.counts.get(PREDICTION, 0) + counts

    def report(self, now_ms: int) -> dict[str, dict[str, float]]:
        """Per feature (and ``prediction``): PSI, KS and the number of values in the window."""
        oldest = (now_ms - self.window_ms) // BUCKET_MS
        while self._buckets and self._buckets[0].second <= oldest:
            self._buckets.popleft()
        result = {}
        references = {name: ref for name, (_, ref) in self.columns.items()}
        if self.prediction is not None:
            references[PREDICTION] = self.prediction
        hours = sum((b.hours for b in self._buckets), np.zeros(24))
        for name, reference in references.items():
            counts = sum(
                (b.counts[name] for b in self._buckets if name in b.counts),
                np.zeros(len(reference.shares)),
            )
            expected = reference.expected(hours)
            key = self.feature_entities.get(name)
            if key is None:  # an event field, or the prediction: every event counts
                independent = float(counts.sum())
            else:
                independent = float(
                    len(set().union(*(b.entities.get(key, set()) for b in self._buckets)))
                )
            judged = independent >= self.min_entities
            result[name] = {
                "psi": psi(expected, counts) if judged else float("nan"),
                "ks": ks(expected, counts) if judged else float("nan"),
                "values": float(counts.sum()),
                "independent": independent,
            }
        return result
