"""Pure logic of the model lifecycle: the promotion policy, the paired bootstrap, per-row
losses, the A/B split, and the orchestrator's triggers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from stream_app.lifecycle.orchestrator import Watch, assess, is_degraded
from stream_app.models.evaluation import decide, paired_bootstrap, row_losses
from stream_app.models.metrics import task_metrics
from stream_app.scoring.model_set import split_traffic, traffic_bucket
from stream_app.settings import LifecycleSettings

POLICY = LifecycleSettings(min_samples=100, min_improvement=0.02, significance=0.05)


def test_the_policy_promotes_a_clear_significant_improvement() -> None:
    verdict = decide("mae", 10.0, 2.0, rows=500, p_value=0.0, settings=POLICY)
    assert verdict.promote
    assert verdict.improvement == pytest.approx(0.8)
    assert any("improves by 80.0%" in r for r in verdict.reasons)


@pytest.mark.parametrize(
    ("champion", "challenger", "rows", "p_value", "why"),
    [
        (10.0, 2.0, 99, 0.0, "only 99 labelled rows"),
        (10.0, 9.9, 500, 0.0, "below the 2.0%"),
        (10.0, 11.0, 500, 1.0, "worsens by 10.0%"),
        (10.0, 5.0, 500, 0.2, "not significant"),
    ],
)
def test_the_policy_refuses_with_the_reason(
    champion: float, challenger: float, rows: int, p_value: float, why: str
) -> None:
    verdict = decide("mae", champion, challenger, rows, p_value, POLICY)
    assert not verdict.promote
    assert any(why in r for r in verdict.reasons), verdict.reasons


def test_higher_is_better_metrics_count_improvement_upwards() -> None:
    assert decide("auc", 0.70, 0.80, 500, 0.0, POLICY).promote
    assert not decide("auc", 0.80, 0.70, 500, 0.0, POLICY).promote


def test_the_paired_bootstrap_tells_a_real_gain_from_noise() -> None:
    rng = np.random.default_rng(1)
    champion = np.abs(rng.normal(0, 3, 2000))
    better = champion * 0.7  # every row better
    assert paired_bootstrap(champion, better, 500, seed=1) == 0.0
    same_quality = np.abs(rng.normal(0, 3, 2000))  # independent, equally good
    p = paired_bootstrap(champion, same_quality, 500, seed=1)
    assert 0.01 < p < 0.99
    worse = champion * 1.3
    assert paired_bootstrap(champion, worse, 500, seed=1) == 1.0


def test_the_bootstrap_is_reproducible_with_its_seed() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.random(300), rng.random(300)
    assert paired_bootstrap(a, b, 300, seed=9) == paired_bootstrap(a, b, 300, seed=9)


@pytest.mark.parametrize("metric", ["mae", "rmse", "mape", "within_tolerance"])
def test_row_losses_average_to_the_regression_metric(metric: str) -> None:
    rng = np.random.default_rng(3)
    actual = rng.uniform(10, 60, 1000)
    predicted = actual + rng.normal(0, 4, 1000)
    losses = row_losses(metric, predicted, actual, tolerance=5.0, threshold=0.5)
    value = task_metrics("regression", predicted, actual, 5.0, 0.5)[metric]
    expected = {
        "mae": value,
        "rmse": value**2,  # the mean squared error
        "mape": value / 100,
        "within_tolerance": 1 - value,  # the miss rate
    }[metric]
    assert losses.mean() == pytest.approx(expected)


@pytest.mark.parametrize("metric", ["accuracy", "log_loss", "auc"])
def test_row_losses_of_binary_metrics(metric: str) -> None:
    rng = np.random.default_rng(4)
    actual = (rng.random(500) < 0.3).astype(float)
    probability = np.clip(actual * 0.6 + rng.random(500) * 0.4, 0, 1)
    losses = row_losses(metric, probability, actual, tolerance=None, threshold=0.5)
    metrics = task_metrics("binary", probability, actual, None, 0.5)
    if metric == "accuracy":
        assert losses.mean() == pytest.approx(1 - metrics["accuracy"])
    else:  # log loss, also for AUC, which has no per-row form
        assert losses.mean() == pytest.approx(metrics["log_loss"])


def _to_challenger(ids: list[str], fraction: float) -> list[bool]:
    return [arm == 0 for arm in split_traffic(ids, [fraction])]


def test_the_traffic_split_is_stable_and_near_its_fraction() -> None:
    ids = [f"courier-{i}" for i in range(20_000)]
    chosen = _to_challenger(ids, 0.3)
    assert abs(sum(chosen) / len(ids) - 0.3) < 0.015
    assert chosen == _to_challenger(ids, 0.3)  # same answer every time
    assert _to_challenger(["courier-7"] * 5, 0.3) == [_to_challenger(["courier-7"], 0.3)[0]] * 5
    # growing the share only adds entities: nobody moves back to the champion
    wider = _to_challenger(ids, 0.5)
    assert all(w for c, w in zip(chosen, wider, strict=True) if c)
    assert not any(_to_challenger(ids[:100], 0.0))
    assert all(_to_challenger(ids[:100], 1.0))


def test_a_b_n_gives_each_arm_its_share_and_a_new_arm_moves_nobody_between_the_others() -> None:
    ids = [f"machine-{i}" for i in range(30_000)]
    two = split_traffic(ids, [0.2, 0.1])
    shares = Counter(two)
    assert abs(shares[0] / len(ids) - 0.2) < 0.015
    assert abs(shares[1] / len(ids) - 0.1) < 0.015
    assert abs(shares[-1] / len(ids) - 0.7) < 0.015  # the champion takes the rest
    three = split_traffic(ids, [0.2, 0.1, 0.3])
    assert abs(Counter(three)[2] / len(ids) - 0.3) < 0.015
    # the third arm comes from the champion's share only
    assert all(after == before for before, after in zip(two, three, strict=True) if before >= 0)
    assert split_traffic(ids[:10], []) == [-1] * 10
    assert split_traffic(["m-1"] * 4, [0.5, 0.5]) == [split_traffic(["m-1"], [0.5, 0.5])[0]] * 4


def test_the_traffic_bucket_does_not_depend_on_the_process() -> None:
    # not Python's salted hash(): another process, with another hash seed, agrees
    code = "from stream_app.scoring.model_set import traffic_bucket as b; print(b('courier-1'))"
    other = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": "12345"},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert float(other.stdout) == traffic_bucket("courier-1")
    assert 0 <= traffic_bucket("") < 1


def test_degradation_reads_error_rates_for_higher_is_better_metrics() -> None:
    assert is_degraded("mae", 3.0, 1.5, 1.5)
    assert not is_degraded("mae", 2.0, 1.5, 1.5)
    assert is_degraded("within_tolerance", 0.80, 0.95, 1.5)  # misses 20% vs 5%
    assert not is_degraded("within_tolerance", 0.94, 0.95, 1.5)


SETTINGS = LifecycleSettings(min_labels=100, degradation_factor=1.5, degradation_for_s=30)
BAD = {"labels": 500.0, "mae": 9.0}
GOOD = {"labels": 500.0, "mae": 1.6}


def _assess(watch: Watch, rolling: dict[str, float] | None, now_s: float, **kw: object) -> object:
    arguments: dict[str, object] = {
        "watch": watch, "metric": "mae", "reference": 1.5, "rolling": rolling,
        "drift_alarms": [], "champion_created_ms": 0, "now_ms": int(now_s * 1000),
        "settings": SETTINGS, **kw,
    }  # fmt: skip
    return assess(**arguments)  # type: ignore[arg-type]


def test_degradation_must_last_before_it_triggers() -> None:
    watch = Watch("v1")
    assert _assess(watch, BAD, 100) is None
    assert watch.troubled_since_ms == 100_000
    assert _assess(watch, BAD, 120) is None
    trigger = _assess(watch, BAD, 130)
    assert trigger is not None
    assert trigger.kind == "degradation"  # type: ignore[attr-defined]
    assert "rolling mae 9 over 500 labels" in trigger.reasons[0]  # type: ignore[attr-defined]


def test_a_blip_resets_the_clock() -> None:
    watch = Watch("v1")
    _assess(watch, BAD, 100)
    assert _assess(watch, GOOD, 110) is None
    assert watch.troubled_since_ms is None
    assert _assess(watch, BAD, 135) is None  # the clock restarted at 135


def test_too_few_labels_or_no_reference_judge_nothing() -> None:
    watch = Watch("v1")
    assert _assess(watch, {"labels": 50.0, "mae": 50.0}, 0) is None
    assert watch.troubled_since_ms is None
    assert _assess(watch, BAD, 0, reference=None) is None
    assert watch.troubled_since_ms is None


def test_drift_triggers_only_when_the_settings_say_so() -> None:
    alarm = [{"feature": "distance_km", "psi": 0.9, "ks": 0.4, "values": 900}]
    watch = Watch("v1")
    _assess(watch, GOOD, 0, drift_alarms=alarm)
    trigger = _assess(watch, GOOD, 31, drift_alarms=alarm)
    assert trigger is not None
    assert trigger.kind == "drift"  # type: ignore[attr-defined]
    off = LifecycleSettings(retrain_on_drift=False, degradation_for_s=0)
    assert _assess(Watch("v1"), GOOD, 31, drift_alarms=alarm, settings=off) is None


def test_the_schedule_retrains_an_old_champion() -> None:
    scheduled = LifecycleSettings(schedule_s=3600)
    assert _assess(Watch("v1"), GOOD, 3599, settings=scheduled) is None
    trigger = _assess(Watch("v1"), GOOD, 3600, settings=scheduled)
    assert trigger is not None
    assert trigger.kind == "schedule"  # type: ignore[attr-defined]
