"""`stream-app bench scorer`: the compiled scorer against LightGBM's predict, same run.

For each use case a model is trained as `stream-app bootstrap` trains the first one (``days``
of the simulated world's history, ``training.fit`` with the training settings), compiled into
a fresh cache folder (the compilation is timed), loaded a second time from that cache (timed),
and both scorers are timed on the model's own validation rows at batch sizes 1 and 1,000,
their calls interleaved (one LightGBM call, one compiled call, ...) so that a busy machine
slows both alike; the medians per call are reported. Target: the compiled scorer at least
4 times as fast at both sizes.
"""

from __future__ import annotations

import io
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from stream_app.models.compiled import Compilation, CompiledScorer, load_scorer, max_difference
from stream_app.models.scorer import LightGBMScorer, Matrix, Scorer
from stream_app.models.training import TrainingSet, fit
from stream_app.settings import Settings
from stream_app.simulation.history import labelled_frame
from stream_app.simulation.world import World
from stream_app.use_cases.spec import UseCase

START_MS = 1_795_000_000_000
BATCH_SIZES = (1, 1000)
TARGET_SPEEDUP = 4.0


def _median_us(scorers: tuple[Scorer, Scorer], batches: list[Matrix], repeats: int) -> list[float]:
    times: list[list[int]] = [[], []]
    for i in range(repeats):
        batch = batches[i % len(batches)]
        for which, scorer in enumerate(scorers):
            started = time.perf_counter_ns()
            scorer.predict(batch)
            times[which].append(time.perf_counter_ns() - started)
    return [statistics.median(t) / 1000 for t in times]


def _batches(rows: Matrix, size: int, count: int = 16) -> list[Matrix]:
    if len(rows) < size:
        rows = np.resize(rows, (size, rows.shape[1]))
    starts = np.linspace(0, len(rows) - size, num=min(count, len(rows) - size + 1)).astype(int)
    return [np.ascontiguousarray(rows[s : s + size]) for s in starts]


def bench_use_case(
    settings: Settings, use_case: UseCase, days: float, events_per_day: int | None, repeats: int
) -> dict[str, Any]:
    assert use_case.simulation is not None
    per_day = events_per_day or use_case.simulation.history_events_per_day
    x, y = labelled_frame(World(use_case, settings.training.seed), START_MS, days, per_day)
    data = TrainingSet(use_case.feature_names, x, y, START_MS + np.arange(len(y)) * 1000,
                       [str(i) for i in range(len(y))])  # fmt: skip
    result = fit(data, use_case, settings.training, io.StringIO())
    text = result.booster.model_to_string()
    validation = x[len(y) - result.validation_rows :]
    version = f"{use_case.name}-bench"
    reference = LightGBMScorer(version, use_case.feature_names, text)
    with tempfile.TemporaryDirectory(prefix="stream-app-bench-scorer-") as folder:
        compilation = Compilation(True, Path(folder))
        fallbacks: list[str] = []
        started = time.perf_counter()
        compiled = load_scorer(version, use_case.feature_names, text, compilation=compilation,
                               check_rows=validation, on_fallback=fallbacks.append)  # fmt: skip
        first_load_s = time.perf_counter() - started
        started = time.perf_counter()
        again = load_scorer(version, use_case.feature_names, text, compilation=compilation)
        cached_load_s = time.perf_counter() - started
    out: dict[str, Any] = {
        "trees": result.booster.num_trees(),
        "features": len(use_case.feature_names),
        "train_rows": result.train_rows,
        "validation_rows": result.validation_rows,
    }
    if not isinstance(compiled, CompiledScorer):
        return {**out, "compiled": False, "fallback": fallbacks, "targets_met": False}
    cache_hit = isinstance(again, CompiledScorer) and again.cache_hit
    sizes: dict[str, dict[str, float]] = {}
    for size in BATCH_SIZES:
        batches = _batches(validation, size)
        count = repeats if size == 1 else max(repeats // 10, 5)
        lightgbm_us, compiled_us = _median_us((reference, compiled), batches, count)
        sizes[str(size)] = {
            "lightgbm_us": round(lightgbm_us, 1),
            "compiled_us": round(compiled_us, 1),
            "speedup": round(lightgbm_us / compiled_us, 2),
            "calls": count,
        }
    difference = max_difference(reference.predict(validation), compiled.predict(validation))
    return {
        **out,
        "compiled": True,
        "compile_s": round(compiled.compile_seconds, 2),
        "load_with_compile_and_check_s": round(first_load_s, 2),
        "cached_load_s": round(cached_load_s, 3),
        "cache_hit": cache_hit,
        "check_rows": compiled.check_rows,
        "max_abs_difference_check": compiled.max_abs_difference,
        "max_abs_difference_validation": difference,
        "batch_sizes": sizes,
        "targets_met": all(s["speedup"] >= TARGET_SPEEDUP for s in sizes.values()),
    }


def run(
    settings: Settings,
    use_cases: list[UseCase],
    days: float = 3.0,
    events_per_day: int | None = None,
    repeats: int = 2000,
) -> dict[str, Any]:
    results = {
        use_case.name: bench_use_case(settings, use_case, days, events_per_day, repeats)
        for use_case in use_cases
    }
    return {
        "benchmark": "scorer",
        "target_speedup": TARGET_SPEEDUP,
        "batch_sizes": list(BATCH_SIZES),
        "use_cases": results,
        "targets_met": all(r["targets_met"] for r in results.values()),
    }
