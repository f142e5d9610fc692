"""Event-time windows and the aggregate functions of the use-case specs (pure functions).

A window of ``size`` every ``step`` (tumbling: step = size) covers ``[start, start + size)``
with ``start`` a multiple of ``step``. The value served for time ``t`` comes from the oldest
window still open at ``t`` (the one covering most of the last ``size``): for tumbling windows
the current window, for hopping windows a sliding window with ``step`` resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


def served_window_start(t_ms: int, size_ms: int, step_ms: int) -> int:
    """Start of the window whose value is served at ``t_ms``."""
    return ((t_ms - size_ms) // step_ms + 1) * step_ms


def window_starts(t_ms: int, size_ms: int, step_ms: int) -> range:
    """Starts of every window that contains ``t_ms``, oldest first."""
    return range(
        served_window_start(t_ms, size_ms, step_ms), t_ms // step_ms * step_ms + 1, step_ms
    )


@dataclass(slots=True)
class RunningAggregate:
    """Mergeable state of one window: enough for count, sum, mean, min, max, std and last."""

    count: int = 0
    total: float = 0.0
    total_sq: float = 0.0
    minimum: float = math.inf
    maximum: float = -math.inf
    last: float = math.nan
    last_time: int = -1

    def add(self, value: float, time_ms: int) -> None:
        self.count += 1
        self.total += value
        self.total_sq += value * value
        self.minimum = min(self.minimum, value)
        self.maximum = max(self.maximum, value)
        if time_ms >= self.last_time:
            self.last, self.last_time = value, time_ms

    def merge(self, other: RunningAggregate) -> None:
        """Add another window's (or pane's) readings to this one."""
        if other.count == 0:
            return
        self.count += other.count
        self.total += other.total
        self.total_sq += other.total_sq
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)
        if other.last_time >= self.last_time:
            self.last, self.last_time = other.last, other.last_time

    def value(self, function: str) -> float | None:
        """The aggregate, or None when the window holds no reading (count is then 0)."""
        if function == "count":
            return float(self.count)
        if self.count == 0:
            return None
        if function == "sum":
            return self.total
        if function == "mean":
            return self.total / self.count
        if function == "min":
            return self.minimum
        if function == "max":
            return self.maximum
        if function == "last":
            return self.last
        if function == "std":  # from sums: bounded by half the range (see aggregate_rows)
            mean = self.total / self.count
            variance = self.total_sq / self.count - mean * mean
            return min(math.sqrt(max(variance, 0.0)), (self.maximum - self.minimum) / 2)
        raise ValueError(f"unknown aggregate function {function!r}")


def aggregate_rows(values: Any, counts: Any, function: str) -> Any:
    """``RunningAggregate.value`` for many windows at once.

    ``values`` is a (rows, k) array whose first ``counts[i]`` entries of row i are readings in
    time order; the rest is padding. Rows without readings give NaN, except
    ``count`` which gives 0.
    """
    rows, k = values.shape
    mask = np.arange(k)[None, :] < counts[:, None]
    n = counts.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        if function == "count":
            return n
        total = np.where(mask, values, 0.0).sum(axis=1)
        if function == "sum":
            result = total
        elif function == "mean":
            result = total / n
        elif function == "min":
            result = np.where(mask, values, np.inf).min(axis=1)
        elif function == "max":
            result = np.where(mask, values, -np.inf).max(axis=1)
        elif function == "last":
            result = values[np.arange(rows), np.maximum(counts - 1, 0)]
        elif function == "std":
            # E[x^2] - E[x]^2 cancels: identical readings of 86.04 gave 1.7e-6, not 0. A
            # population std never exceeds half the range, which removes that noise.
            mean = total / n
            variance = np.where(mask, values**2, 0.0).sum(axis=1) / n - mean**2
            spread = np.where(mask, values, -np.inf).max(axis=1) - np.where(
                mask, values, np.inf
            ).min(axis=1)
            result = np.minimum(np.sqrt(np.maximum(variance, 0.0)), spread / 2)
        else:
            raise ValueError(f"unknown aggregate function {function!r}")
    return np.where(counts > 0, result, np.nan)
