"""The compiled scorer (lleaves) predicts what LightGBM predicts, or is not used.

Real models (trained by ``training.fit`` on the shipped use cases' simulated history, a few
rounds), really compiled, compared with LightGBM on their own validation rows at batch sizes
1 and 1,000, with missing values; a model lleaves compiles wrongly (linear trees), or cannot
compile, is scored by LightGBM with a warning and the fallback metric; the disk cache spares
the second load its compilation.
"""

from __future__ import annotations

import io
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from stream_app.models import compiled
from stream_app.models.compiled import TOLERANCE, Compilation, CompiledScorer, load_scorer
from stream_app.models.lgb import lgb
from stream_app.models.scorer import LightGBMScorer
from stream_app.models.training import TrainingSet, fit
from stream_app.monitoring.prometheus import WorkerMetrics
from stream_app.settings import ScoringSettings, Settings, TrainingSettings
from stream_app.simulation.history import labelled_frame
from stream_app.simulation.world import World
from stream_app.use_cases.spec import load_use_case

START_MS = 1_795_000_000_000
MEASURED_BOUND = 1e-12  # what lleaves achieves here (2.5e-16 binary, 2e-13 regression)


@dataclass
class Trained:
    use_case: str
    feature_names: list[str]
    model_text: str
    validation: np.ndarray[Any, Any]


@pytest.fixture(scope="module", params=["delivery_eta", "machine_failure"])
def trained(request: pytest.FixtureRequest) -> Trained:
    """A real model of a shipped use case, trained as `stream-app train` trains (few rounds)."""
    use_case = load_use_case(request.param)
    x, y = labelled_frame(World(use_case, 7), START_MS, 0.5, 12_000)
    data = TrainingSet(use_case.feature_names, x, y, START_MS + np.arange(len(y)) * 1000,
                       [str(i) for i in range(len(y))])  # fmt: skip
    settings = TrainingSettings(num_boost_round=25, early_stopping_rounds=25)
    result = fit(data, use_case, settings, io.StringIO())
    validation = x[len(y) - result.validation_rows :]
    assert len(validation) >= 1000
    return Trained(use_case.name, use_case.feature_names, result.booster.model_to_string(),
                   validation)  # fmt: skip


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("compiled")


def test_compiled_predictions_equal_lightgbm_on_the_validation_rows(
    trained: Trained, cache_dir: Path
) -> None:
    scorer = load_scorer("v1", trained.feature_names, trained.model_text,
                         compilation=Compilation(True, cache_dir / trained.use_case),
                         check_rows=trained.validation)  # fmt: skip
    assert isinstance(scorer, CompiledScorer)
    assert scorer.max_abs_difference is not None
    assert scorer.max_abs_difference <= MEASURED_BOUND
    reference = LightGBMScorer("v1", trained.feature_names, trained.model_text)
    rows = trained.validation.copy()
    with_missing = rows.copy()
    with_missing[np.random.default_rng(1).random(rows.shape) < 0.2] = np.nan
    for matrix in (rows, with_missing):
        for size in (1, 1000):
            for start in range(0, len(matrix) - size + 1, max(size, len(matrix) // 50)):
                batch = matrix[start : start + size]
                expected, actual = reference.predict(batch), scorer.predict(batch)
                assert actual.shape == expected.shape == (size,)
                assert actual.dtype == np.float64
                bound = TOLERANCE * np.maximum(1.0, np.abs(expected))
                assert np.all(np.abs(actual - expected) <= bound)
                assert np.max(np.abs(actual - expected)) <= MEASURED_BOUND
    # a column-sliced (non-contiguous) matrix, as the replay passes, and no rows at all
    wide = np.repeat(rows[:50], 2, axis=1)[:, ::2]
    assert np.abs(scorer.predict(wide) - reference.predict(rows[:50])).max() <= MEASURED_BOUND
    assert scorer.predict(rows[:0]).shape == (0,)


def test_a_second_load_reads_the_disk_cache_instead_of_compiling(
    trained: Trained, tmp_path: Path
) -> None:
    compilation = Compilation(True, tmp_path / "cache")
    first = load_scorer("v7", trained.feature_names, trained.model_text, compilation=compilation)
    assert isinstance(first, CompiledScorer)
    assert not first.cache_hit
    [cached] = (tmp_path / "cache").iterdir()  # one object, no temporary file left over
    assert cached.name.startswith("v7-")
    assert cached.suffix == ".o"
    written = cached.stat().st_mtime_ns

    second = load_scorer("v7", trained.feature_names, trained.model_text, compilation=compilation)
    assert isinstance(second, CompiledScorer)
    assert second.cache_hit
    assert second.compile_seconds < first.compile_seconds
    assert cached.stat().st_mtime_ns == written
    assert list((tmp_path / "cache").iterdir()) == [cached]
    rows = trained.validation[:1000]
    assert np.array_equal(first.predict(rows), second.predict(rows))
    # another model text under the same version name is never served from the old object
    other = lgb.Booster(model_str=trained.model_text).model_to_string(num_iteration=3)
    third = load_scorer("v7", trained.feature_names, other, compilation=compilation)
    assert isinstance(third, CompiledScorer)
    assert not third.cache_hit
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_quick_compiles_without_inlining_unless_the_optimised_object_is_cached(
    trained: Trained, tmp_path: Path
) -> None:
    quick = Compilation(True, tmp_path, quick=True)
    first = load_scorer("v8", trained.feature_names, trained.model_text, compilation=quick)
    assert isinstance(first, CompiledScorer)
    [made] = tmp_path.iterdir()
    assert made.name.endswith("-quick.o")
    rows = trained.validation[:1000]
    reference = LightGBMScorer("v8", trained.feature_names, trained.model_text)
    assert np.abs(first.predict(rows) - reference.predict(rows)).max() <= MEASURED_BOUND

    optimised = load_scorer("v8", trained.feature_names, trained.model_text,
                            compilation=Compilation(True, tmp_path))  # fmt: skip
    assert isinstance(optimised, CompiledScorer)
    assert not optimised.cache_hit  # the quick object is not the optimised one
    again = load_scorer("v8", trained.feature_names, trained.model_text, compilation=quick)
    assert isinstance(again, CompiledScorer)
    assert again.cache_hit  # the optimised object, now that there is one
    assert sorted(p.name.endswith("-quick.o") for p in tmp_path.iterdir()) == [False, True]


def load_counted(
    caplog: pytest.LogCaptureFixture, version: str, names: list[str], text: str, cache: Path
) -> tuple[Any, CollectorRegistry, str]:
    """``load_scorer`` with the worker's fallback metric: the scorer, the metrics and the one
    warning line it logged."""
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry)
    with caplog.at_level(logging.WARNING, logger="stream_app.models.compiled"):
        scorer = load_scorer(
            version, names, text, compilation=Compilation(True, cache),
            on_fallback=lambda reason: metrics.scorer_fallbacks.labels(reason).inc(),
        )  # fmt: skip
    [line] = [r.getMessage() for r in caplog.records]
    return scorer, registry, line


def fallbacks(registry: CollectorRegistry, reason: str) -> float:
    value = registry.get_sample_value("stream_app_scorer_fallbacks_total", {"reason": reason})
    return value or 0.0


def linear_tree_model() -> str:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 3))
    y = 2 * x[:, 0] + x[:, 1]
    params = {"linear_tree": True, "verbose": -1, "num_threads": 1}
    return str(lgb.train(params, lgb.Dataset(x, y), num_boost_round=5).model_to_string())


def test_a_model_lleaves_compiles_wrongly_is_scored_by_lightgbm(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """lleaves compiles linear trees as constant leaves: the check sees it."""
    scorer, registry, line = load_counted(caplog, "linear-1", ["a", "b", "c"],
                                          linear_tree_model(), tmp_path)  # fmt: skip
    assert type(scorer) is LightGBMScorer
    assert fallbacks(registry, "mismatch") == 1
    assert "linear-1" in line
    assert "mismatch" in line
    assert "\n" not in line


def test_without_lleaves_the_model_is_scored_by_lightgbm(
    trained: Trained, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setitem(sys.modules, "lleaves", None)  # not installed
    scorer, registry, line = load_counted(caplog, "v2", trained.feature_names,
                                          trained.model_text, tmp_path)  # fmt: skip
    assert type(scorer) is LightGBMScorer
    assert fallbacks(registry, "unavailable") == 1
    assert "v2" in line
    assert "lleaves cannot be imported" in line


def test_a_compiler_error_falls_back_and_a_wrong_compiled_model_is_refused(
    trained: Trained, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    reasons: list[str] = []

    def broken(version: str, text: str, cache: Path | None, quick: bool) -> tuple[Any, float, bool]:
        raise RuntimeError("LLVM ERROR: out of registers\nand more")

    with caplog.at_level(logging.WARNING, logger="stream_app.models.compiled"):
        scorer = load_scorer("v3", trained.feature_names, trained.model_text,
                             compilation=Compilation(True, tmp_path), on_fallback=reasons.append,
                             compiler=broken)  # fmt: skip
    assert type(scorer) is LightGBMScorer
    assert reasons == ["compile_error"]
    assert "out of registers" in caplog.records[-1].getMessage()
    assert "and more" not in caplog.records[-1].getMessage()

    # the seam hands over a real compiled model of another model text: the check refuses it
    fewer = lgb.Booster(model_str=trained.model_text).model_to_string(num_iteration=2)

    def other_model(
        version: str, text: str, cache: Path | None, quick: bool
    ) -> tuple[Any, float, bool]:
        return compiled.compile_model(version, fewer, cache, quick)

    scorer = load_scorer("v4", trained.feature_names, trained.model_text,
                         compilation=Compilation(True, None), on_fallback=reasons.append,
                         compiler=other_model)  # fmt: skip
    assert type(scorer) is LightGBMScorer
    assert reasons == ["compile_error", "mismatch"]


def test_compilation_off_is_lightgbm_without_a_fallback(trained: Trained) -> None:
    reasons: list[str] = []
    off = Compilation.from_settings(Settings(scoring=ScoringSettings(compiled=False)))
    scorer = load_scorer("v5", trained.feature_names, trained.model_text, compilation=off,
                         on_fallback=reasons.append)  # fmt: skip
    assert type(scorer) is LightGBMScorer
    assert reasons == []
    on = Compilation.from_settings(Settings(scoring=ScoringSettings(compiled=True)))
    assert on.enabled
    assert on.cache_dir == Path(".stream-app") / "compiled"


def test_threshold_rows_meet_every_split_boundary(trained: Trained) -> None:
    rows = compiled.threshold_rows(trained.model_text, len(trained.feature_names))
    assert rows.shape == (compiled.CHECK_ROWS, len(trained.feature_names))
    assert np.isnan(rows).any()
    booster = lgb.Booster(model_str=trained.model_text)
    tree = booster.dump_model()["tree_info"][0]["tree_structure"]
    threshold, feature = float(tree["threshold"]), int(tree["split_feature"])
    column = rows[:, feature]
    assert threshold in column
    assert np.nextafter(threshold, np.inf) in column


def test_cached_only_never_compiles_and_uses_the_optimised_object_once_cached(
    trained: Trained, tmp_path: Path
) -> None:
    cached_only = Compilation(True, tmp_path, cached_only=True)
    first = load_scorer("v9", trained.feature_names, trained.model_text, compilation=cached_only)
    assert type(first) is LightGBMScorer
    assert not list(tmp_path.iterdir())  # nothing compiled
    load_scorer("v9", trained.feature_names, trained.model_text,
                compilation=Compilation(True, tmp_path))  # fmt: skip  # (the worker's compile)
    again = load_scorer("v9", trained.feature_names, trained.model_text, compilation=cached_only)
    assert isinstance(again, CompiledScorer)
    assert again.cache_hit


def test_a_child_compiles_into_the_cache_and_says_why_it_could_not(
    trained: Trained, tmp_path: Path
) -> None:
    from stream_app.models.compile_process import compile_elsewhere

    compile_elsewhere("v10", trained.model_text, tmp_path)
    [made] = tmp_path.glob("*.o")  # (beside the hidden lock file of the version)
    assert made.name.startswith("v10-")
    loaded = load_scorer("v10", trained.feature_names, trained.model_text,
                         compilation=Compilation(True, tmp_path, cached_only=True))  # fmt: skip
    assert isinstance(loaded, CompiledScorer)
    assert loaded.cache_hit

    with pytest.raises(compiled.CompileFailed, match="lleaves") as refused:
        compile_elsewhere("v11", "tree\nnot a model\n", tmp_path)
    assert refused.value.reason == "compile_error"
