"""The compiled scorer: a model version as native code (lleaves, LLVM), checked against LightGBM.

Each version is compiled once, when it is loaded, and the object code is kept on disk under
``<services.home>/compiled/<use case>/<version>-<key>.o``; the key hashes the model text, the
lleaves and llvmlite versions and the host CPU, so a changed model or machine never reuses a
stale file. The file is written under a temporary name and renamed, so processes loading the
same version at once never read half a file.

Before a compiled model is used its predictions are compared with LightGBM's own on check
rows: rows made from the model's split thresholds (each value on, just above and just below a
threshold, zeros and missing values: every decision boundary of the trees) plus any real rows
the caller has (an evaluation's holdout, a training run's validation rows). They must agree
within ``TOLERANCE`` relative to the prediction (measured: at most 2.5e-16 on a binary model's
probabilities and 2e-13 on a regression's minutes, from summing the trees in another order).
A model that cannot be compiled (lleaves or llvmlite missing, a model text lleaves refuses, a
multiclass model) or that fails the check (lleaves compiles linear trees as plain ones) is
scored by LightGBM instead, with one warning line and ``stream_app_scorer_fallbacks_total``.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import os
import platform
import re
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stream_app.models.scorer import LightGBMScorer, Matrix, Scorer, VersionedScorer

if TYPE_CHECKING:
    from stream_app.settings import Settings

log = logging.getLogger(__name__)

TOLERANCE = 1e-9  # |compiled - lightgbm| <= TOLERANCE * max(1, |lightgbm|) on every check row
CHECK_ROWS = 2000  # threshold-made check rows per model
MISSING_SHARE = 0.1  # of their values missing (NaN)
_ENTRY = "forest_root"
# lleaves' entry point: (rows pointer, results pointer, first row, end row); drops the GIL
_ENTRY_TYPE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32,
                               ctypes.c_int32)  # fmt: skip
_MULTI_THREAD_MIN_ROWS = 2_000  # fewer rows per thread: one thread is quicker


class CompileFailed(Exception):
    """The model could not be compiled or its compiled predictions differ from LightGBM's."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = (
            reason  # the metric's label: unavailable, unsupported, compile_error, mismatch
        )


@dataclass(frozen=True)
class Compilation:
    """Whether versions are compiled, where compiled versions are kept, and how.

    ``quick``: when no optimised object of the version is cached, compile without inlining
    (measured on a 391-tree model: 3.1 s to compile against 14.5 s, 7.8 against 7.2 us for one
    row, 4.9 against 4.1 ms for 1,000): what a replay or an evaluation, which cannot wait for
    the worker's background compile, uses. The worker compiles optimised, in the background.
    """

    enabled: bool
    cache_dir: Path | None  # None: compile in memory every time
    quick: bool = False
    cached_only: bool = False  # never compile: the cached optimised object, or LightGBM

    @classmethod
    def from_settings(
        cls, settings: Settings, quick: bool = False, cached_only: bool = False
    ) -> Compilation:
        home = settings.services.home / "compiled"
        return cls(settings.scoring.compiled, home, quick, cached_only)

    @classmethod
    def off(cls) -> Compilation:
        return cls(False, None)


class CompiledScorer(VersionedScorer):
    """A model version compiled to native code; the same predictions as ``LightGBMScorer``."""

    kind = "compiled"

    def __init__(
        self,
        version: str,
        feature_names: list[str],
        model: Any,  # lleaves.Model, compiled (lleaves has no type hints)
        threads: int = 1,
        *,
        compile_seconds: float = 0.0,
        cache_hit: bool = False,
    ) -> None:
        self._model = model
        self._threads = threads
        self._features = int(model.num_feature())
        super().__init__(version, feature_names, self._features)
        if int(model.num_model_per_iteration()) != 1:
            raise CompileFailed("unsupported", "multiclass models are not compiled")
        # lleaves' own predict costs ~10 us of Python per call: call its entry point directly
        address = model._execution_engine.get_function_address(_ENTRY)
        self._entry = _ENTRY_TYPE(address)
        self.compile_seconds = compile_seconds
        self.cache_hit = cache_hit
        self.max_abs_difference: float | None = None  # set by the check
        self.check_rows = 0

    def predict(self, matrix: Matrix) -> Matrix:
        data = np.ascontiguousarray(matrix, dtype=np.float64)
        if data.ndim != 2 or data.shape[1] != self._features:
            raise ValueError(f"expected rows of {self._features} features, got {data.shape}")
        rows = data.shape[0]
        if self._threads > 1 and rows >= _MULTI_THREAD_MIN_ROWS * 2:
            threads = min(self._threads, rows // _MULTI_THREAD_MIN_ROWS)
            return np.asarray(self._model.predict(data, n_jobs=threads), dtype=np.float64)
        result = np.empty(rows, dtype=np.float64)
        if rows:
            self._entry(data.ctypes.data, result.ctypes.data, 0, rows)
        return result


def cache_key(model_text: str) -> str:
    """What a compiled object depends on: the model, the compiler and the machine."""
    import llvmlite.binding as llvm

    parts = [model_text, metadata.version("lleaves"), metadata.version("llvmlite"),
             platform.machine(), llvm.get_host_cpu_name()]  # fmt: skip
    with contextlib.suppress(RuntimeError):  # LLVM cannot tell the features: the name alone
        parts.append(llvm.get_host_cpu_features().flatten())
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _compile(model_file: Path, cache: Path | None, inline: bool = True) -> Any:
    import lleaves

    model = lleaves.Model(str(model_file))
    model.compile(cache=None if cache is None else str(cache), finline=inline)
    return model


def cached_object(version: str, model_text: str, cache_dir: Path, inline: bool = True) -> Path:
    """Where the compiled object of ``version`` is kept (optimised, or quick without inlining)."""
    return cache_dir / f"{_safe(version)}-{cache_key(model_text)}{'' if inline else '-quick'}.o"


def _cached(version: str, model_text: str, cache_dir: Path | None, quick: bool) -> bool:
    """Whether the cache holds the optimised object of ``version`` (or, ``quick``, its quick
    one)."""
    if cache_dir is None:
        return False
    try:
        if cached_object(version, model_text, cache_dir).exists():
            return True
        return quick and cached_object(version, model_text, cache_dir, False).exists()
    except (ImportError, OSError):
        return False


def compile_model(
    version: str, model_text: str, cache_dir: Path | None, quick: bool = False
) -> tuple[Any, float, bool]:
    """The compiled lleaves model, the seconds it took and whether it came from the cache.

    ``quick``: the optimised object if it is cached, else a quick compile (no inlining)."""
    try:
        import lleaves  # noqa: F401
        import llvmlite.binding  # noqa: F401
    except ImportError as e:
        raise CompileFailed("unavailable", f"lleaves cannot be imported ({e})") from None
    started = time.perf_counter()
    target: Path | None = None
    inline = not quick
    if cache_dir is not None:
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            optimised = cached_object(version, model_text, cache_dir)
            inline = inline or optimised.exists()
            target = optimised if inline else cached_object(version, model_text, cache_dir, False)
        except OSError as e:
            log.warning("cannot keep compiled models in %s (%s); compiling in memory",
                        cache_dir, e)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="stream-app-model-") as folder:
        model_file = Path(folder) / "model.txt"
        model_file.write_text(model_text)
        if target is not None and target.exists():
            try:
                return _compile(model_file, target, inline), time.perf_counter() - started, True
            except Exception as e:  # an unreadable cached object: compile again
                log.warning("compiled model %s unusable (%s); compiling again", target, e)
                target.unlink(missing_ok=True)
        # lleaves writes the object where it is told once compiled: a private name, renamed
        partial = None
        if target is not None:
            partial = target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}")
        try:
            model = _compile(model_file, partial, inline)
        except Exception as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise CompileFailed("compile_error", f"lleaves: {type(e).__name__}: {first}") from e
        finally:
            if partial is not None and partial.exists() and target is not None:
                try:
                    os.replace(partial, target)
                except OSError:
                    partial.unlink(missing_ok=True)
    return model, time.perf_counter() - started, False


def _safe(version: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", version)


def threshold_rows(model_text: str, features: int, rows: int = CHECK_ROWS, seed: int = 0) -> Matrix:
    """Rows whose values sit on, just above and just below the model's split thresholds, with
    zeros, tiny values and missing values: every decision boundary of the trees is met."""
    candidates: list[list[float]] = [[0.0, -0.0, 1e-36, -1e-36, 1.0, -1.0] for _ in range(features)]
    categorical = [False] * features
    split_features: list[int] = []
    for line in model_text.splitlines():
        if line.startswith("split_feature="):
            split_features = [int(v) for v in line.split("=", 1)[1].split()]
        elif line.startswith("decision_type="):
            for feature, kind in zip(split_features, line.split("=", 1)[1].split(), strict=False):
                if int(kind) & 1 and 0 <= feature < features:
                    categorical[feature] = True
        elif line.startswith("threshold="):
            for feature, value in zip(split_features, line.split("=", 1)[1].split(), strict=False):
                if 0 <= feature < features:
                    t = float(value)
                    candidates[feature] += [t, float(np.nextafter(t, np.inf)),
                                            float(np.nextafter(t, -np.inf))]  # fmt: skip
    rng = np.random.default_rng(seed)
    matrix = np.empty((rows, features), dtype=np.float64)
    for feature in range(features):
        values = np.array(candidates[feature], dtype=np.float64)
        if categorical[feature]:
            values = np.concatenate([values, np.arange(-1, 64, dtype=np.float64)])
        finite = values[np.isfinite(values)]
        if len(finite):
            values = np.concatenate([values, [finite.min() - 1, finite.max() + 1]])
        matrix[:, feature] = rng.choice(values, rows)
    matrix[rng.random((rows, features)) < MISSING_SHARE] = np.nan
    return matrix


def max_difference(expected: Matrix, actual: Matrix) -> float:
    """The largest |actual - expected| (infinite when shapes or missing values differ)."""
    if expected.shape != actual.shape:
        return float("inf")
    both_nan = np.isnan(expected) & np.isnan(actual)
    difference = np.where(both_nan, 0.0, np.abs(actual - expected))
    if not difference.size:
        return 0.0
    largest = float(np.max(difference))
    return largest if np.isfinite(largest) else float("inf")


def check(scorer: CompiledScorer, reference: LightGBMScorer, rows: Matrix) -> float:
    """Compare with LightGBM on ``rows``, one row at a time and all at once; raise
    ``CompileFailed`` when a prediction is out of bounds. Returns the largest difference."""
    expected = reference.predict(rows)
    largest = 0.0
    for actual in (scorer.predict(rows), np.concatenate([scorer.predict(r[None]) for r in rows])):
        if actual.shape != expected.shape:
            raise CompileFailed("mismatch", f"compiled shape {actual.shape} != {expected.shape}")
        largest = max(largest, max_difference(expected, actual))
        bound = TOLERANCE * np.maximum(1.0, np.abs(np.nan_to_num(expected)))
        bad = ~(np.abs(np.nan_to_num(actual - expected)) <= bound)
        bad &= ~(np.isnan(expected) & np.isnan(actual))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise CompileFailed(
                "mismatch",
                f"{int(bad.sum())} of {len(rows)} check rows differ from LightGBM beyond "
                f"{TOLERANCE:g} (row {i}: {actual[i]!r} against {expected[i]!r})",
            )
    return largest


FallbackHook = Callable[[str], None]  # called with the reason of a fallback


def load_scorer(
    version: str,
    feature_names: list[str],
    model_text: str,
    *,
    compilation: Compilation,
    threads: int = 1,
    check_rows: Matrix | None = None,
    on_fallback: FallbackHook | None = None,
    compiler: Callable[[str, str, Path | None, bool], tuple[Any, float, bool]] = compile_model,
) -> Scorer:
    """The version compiled and checked against LightGBM, or LightGBM itself when compilation
    is off, impossible, or its predictions differ (a warning line and ``on_fallback(reason)``).

    ``check_rows`` are real rows in the model's column order, checked besides the rows made
    from the model's thresholds; ``compiler`` is the compile step (a seam for tests)."""
    reference = LightGBMScorer(version, feature_names, model_text, threads)
    if not compilation.enabled:
        return reference
    cache_dir, quick = compilation.cache_dir, compilation.quick
    if compilation.cached_only and not _cached(version, model_text, cache_dir, quick):
        return reference  # a choice (scoring a few rows costs less than compiling), not a fault
    try:
        model, seconds, hit = compiler(
            version, model_text, compilation.cache_dir, compilation.quick
        )
        scorer = CompiledScorer(version, feature_names, model, threads,
                                compile_seconds=seconds, cache_hit=hit)  # fmt: skip
        rows = threshold_rows(model_text, len(feature_names))
        if check_rows is not None and len(check_rows):
            real = np.asarray(check_rows, dtype=np.float64)[:CHECK_ROWS]
            rows = np.concatenate([rows, real])
        scorer.max_abs_difference = check(scorer, reference, rows)
        scorer.check_rows = len(rows)
    except CompileFailed as e:
        return _fall_back(reference, e.reason, str(e), on_fallback)
    except Exception as e:  # anything else lleaves raises: still score, with LightGBM
        first = (str(e).strip().splitlines() or [""])[0]
        return _fall_back(reference, "compile_error", f"{type(e).__name__}: {first}", on_fallback)
    log.info(
        "model %s compiled to native code (%s %.2f s); largest difference from LightGBM on "
        "%d check rows: %.3g", version, "read from the cache in" if hit else "compiled in",
        seconds, scorer.check_rows, scorer.max_abs_difference,
    )  # fmt: skip
    return scorer


def _fall_back(
    reference: LightGBMScorer, reason: str, detail: str, on_fallback: FallbackHook | None
) -> LightGBMScorer:
    log.warning("model %s scored by LightGBM, not compiled (%s): %s",
                reference.version, reason, detail)  # fmt: skip
    if on_fallback is not None:
        on_fallback(reason)
    return reference
