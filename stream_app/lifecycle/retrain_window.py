"""Which served data a retraining learns from (pure logic, used by the orchestrator).

The naive window, "the last N hours up to now", teaches the wrong thing right after a change:

- immature labels: an event scored a minute ago has its label only if its outcome came
  quickly (a delivery's label arrives when it is delivered), so the newest labelled rows are
  the short ones. The window ends ``maturity`` before now: the delay within which a quantile
  (``label_maturity_quantile``) of the observed labels arrived.
- the old regime: after a sudden change, the rows before it teach the old relation between
  features and label. After a degradation the window starts at the change point of the
  champion's error, when its loss timeline shows a step up.

``LossTimeline`` keeps what these need, per champion, in time buckets (bounded memory over
hours of traffic): labels and summed loss by event time, and recent label delays.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

MIN_BUCKET_MS = 1000
BUCKETS = 500  # per horizon
MIN_SIDE_LABELS = 50  # labels on each side of a change point, at least
MIN_STEP_T = 5.0  # Welch's t of a change point: far beyond the noise of the best of many splits
DELAYS_KEPT = 20_000


class LossTimeline:
    """Per-row losses of one model by event time, in buckets, over ``horizon_ms``."""

    def __init__(self, horizon_ms: int) -> None:
        self.horizon_ms = horizon_ms
        self.bucket_ms = max(MIN_BUCKET_MS, horizon_ms // BUCKETS)
        self._buckets: dict[int, list[float]] = {}  # start -> [labels, loss sum, of squares]
        self.delays_ms: deque[int] = deque(maxlen=DELAYS_KEPT)

    def add(self, event_ms: int, loss: float, delay_ms: int) -> None:
        if not math.isfinite(loss):
            return
        start = event_ms - event_ms % self.bucket_ms
        bucket = self._buckets.get(start)
        if bucket is None:
            bucket = self._buckets[start] = [0.0, 0.0, 0.0]
        bucket[0] += 1
        bucket[1] += loss
        bucket[2] += loss * loss
        self.delays_ms.append(max(delay_ms, 0))

    def prune(self, now_ms: int) -> None:
        oldest = now_ms - self.horizon_ms - self.bucket_ms
        for start in [s for s in self._buckets if s < oldest]:
            del self._buckets[start]

    def series(self, until_ms: int | None = None) -> Series:
        """Bucket starts, label counts, loss sums and sums of squared losses in time order
        (buckets before ``until_ms`` only)."""
        starts = sorted(s for s in self._buckets if until_ms is None or s < until_ms)
        return Series(
            starts,
            [self._buckets[s][0] for s in starts],
            [self._buckets[s][1] for s in starts],
            [self._buckets[s][2] for s in starts],
        )

    def labels_between(self, since_ms: int, until_ms: int) -> int:
        """Labels of the events in the buckets that start within ``[since_ms, until_ms)``."""
        return int(sum(b[0] for s, b in self._buckets.items() if since_ms <= s < until_ms))

    def delay_quantile(self, quantile: float) -> int | None:
        if not self.delays_ms:
            return None
        return int(np.quantile(np.fromiter(self.delays_ms, np.int64), quantile))


class Series(NamedTuple):
    starts: list[int]
    counts: list[float]
    sums: list[float]
    squares: list[float]

    def since(self, since_ms: int) -> Series:
        keep = [i for i, start in enumerate(self.starts) if start >= since_ms]
        return Series(*([column[i] for i in keep] for column in self))  # type: ignore[arg-type]


def change_point(series: Series, min_labels: int) -> int | None:
    """Where the mean loss steps up: the start of the first bucket after the split that
    explains the most of the loss (one change point, least squares on the buckets). None
    unless the step is up, far beyond the noise (Welch's t of at least ``MIN_STEP_T``), with
    at least ``min_labels`` labels on each side (a side too small is not moved: the split
    would land in the wrong place)."""
    n = np.asarray(series.counts, dtype=np.float64)
    total_n = float(n.sum())
    if len(n) < 2 or total_n < 2 * min_labels:
        return None
    s = np.asarray(series.sums, dtype=np.float64)
    q = np.asarray(series.squares, dtype=np.float64)
    before_n, before_s, before_q = np.cumsum(n)[:-1], np.cumsum(s)[:-1], np.cumsum(q)[:-1]
    after_n, after_s, after_q = total_n - before_n, s.sum() - before_s, q.sum() - before_q
    valid = (before_n > 0) & (after_n > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        before_mean, after_mean = before_s / before_n, after_s / after_n
        explained = before_n * after_n / total_n * np.square(after_mean - before_mean)
    explained = np.where(valid & (after_mean > before_mean), explained, -1.0)
    best = int(np.argmax(explained))
    if explained[best] <= 0 or min(before_n[best], after_n[best]) < min_labels:
        return None
    variance_before = max(before_q[best] / before_n[best] - before_mean[best] ** 2, 0.0)
    variance_after = max(after_q[best] / after_n[best] - after_mean[best] ** 2, 0.0)
    noise = math.sqrt(variance_before / before_n[best] + variance_after / after_n[best])
    step = after_mean[best] - before_mean[best]
    if noise > 0 and step / noise < MIN_STEP_T:
        return None
    return series.starts[best + 1]


@dataclass(frozen=True)
class RetrainWindow:
    """The served data ``[since_ms, until_ms)`` a retraining reads, and why."""

    since_ms: int
    until_ms: int
    labels: int  # labels of the champion's events in the window, as the timeline saw them
    change_ms: int | None = None
    maturity_ms: int = 0
    reasons: list[str] = field(default_factory=list)
    regime_since_ms: int | None = None  # where the current regime began, if known


def retrain_window(
    timeline: LossTimeline | None,
    now_ms: int,
    window_ms: int,
    *,
    from_change: bool,
    maturity_quantile: float,
    regime_since_ms: int | None = None,
) -> RetrainWindow:
    """The window a retraining at ``now_ms`` should learn from (see the module docstring).
    ``regime_since_ms``: where the current regime began, found by an earlier retraining (the
    champion's training window records it); the window never reaches back before it."""
    since, until = now_ms - window_ms, now_ms
    regime = regime_since_ms if regime_since_ms is not None and regime_since_ms > since else None
    if regime is not None:
        since = regime
    reasons = []
    maturity = (timeline.delay_quantile(maturity_quantile) or 0) if timeline is not None else 0
    if maturity:
        until = now_ms - maturity
        reasons.append(
            f"up to {maturity / 1000:.3g} s ago: {maturity_quantile:.0%} of labels arrive "
            "within that, newer events are left out (their labels are missing or biased)"
        )
    change = None
    if from_change and timeline is not None:
        change = change_point(timeline.series(until).since(since), MIN_SIDE_LABELS)
    ago_s = (now_ms - (change or since)) / 1000
    if change is not None:
        since = regime = change
        reasons.append(f"from the change point of the champion's error, {ago_s:.3g} s ago "
                       "(the rows before it teach the old regime)")  # fmt: skip
    elif regime is not None:
        reasons.append(f"from the start of the current regime, {ago_s:.3g} s ago (the change "
                       "point an earlier retraining found)")  # fmt: skip
    else:
        reasons.append(f"from {window_ms / 1000:g} s ago")
    labels = timeline.labels_between(since, until) if timeline is not None else 0
    return RetrainWindow(since, until, labels, change, maturity, reasons, regime)
