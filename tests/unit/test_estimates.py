"""Performance estimated without labels (CBPE, DLE), each window's estimate against its
realised value, skill against a constant, and the orchestrator's triggers on them."""

from __future__ import annotations

import time

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from stream_app.lifecycle.orchestrator import Evidence, Watch, assess
from stream_app.models.loss_estimation import LossEstimator, fit_loss_models
from stream_app.models.metrics import auc, log_loss, skill_of
from stream_app.monitoring.estimates import (
    EstimateLedger,
    EstimateSums,
    Estimator,
    RollingEstimates,
    cbpe_terms,
    estimated_metrics,
)
from stream_app.monitoring.rolling import AccuracySums, accuracy_metrics
from stream_app.monitoring.state import Monitor, MonitorCollector
from stream_app.settings import LifecycleSettings, MonitoringSettings
from stream_app.use_cases.spec import load_use_case

T0 = 1_800_000_000_000


def _calibrated(rows: int, low: float, high: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.uniform(low, high, rows)
    return p, (rng.random(rows) < p).astype(float)


def _cbpe(p: np.ndarray) -> dict[str, float]:
    sums = EstimateSums()
    sums.add(cbpe_terms(p, 0.5), p)
    return estimated_metrics("cbpe", [sums])


@pytest.mark.parametrize(("low", "high"), [(0.01, 0.99), (0.5, 0.95), (0.05, 0.4)])
def test_cbpe_estimates_the_realised_metrics_of_calibrated_probabilities(
    low: float, high: float
) -> None:
    p, labels = _calibrated(40_000, low, high, seed=int(low * 100))
    estimated = _cbpe(p)
    assert estimated["accuracy"] == pytest.approx(np.mean((p >= 0.5) == labels), abs=0.01)
    assert estimated["log_loss"] == pytest.approx(log_loss(p, labels), abs=0.01)
    assert estimated["auc"] == pytest.approx(auc(p, labels), abs=0.015)


def test_cbpe_misses_a_changed_relation_and_the_ledger_says_by_how_much() -> None:
    ledger = EstimateLedger("binary_classification", None, 0.5, 60_000, settle_ms=3_600_000)
    p, labels = _calibrated(5_000, 0.01, 0.99, seed=1)
    flipped = 1 - labels  # the same inputs, the opposite outcome: concept drift
    times = np.full(len(p), T0 + 1_000, dtype=np.int64)
    ledger.add_estimates("v1", "champion", "cbpe", times, cbpe_terms(p, 0.5), p)
    for predicted, actual in zip(p.tolist(), flipped.tolist(), strict=True):
        ledger.add_label("v1", "champion", T0 + 1_000, predicted, actual)
    [compared] = ledger.settle(T0 + 60_000)
    assert compared["estimated"]["accuracy"] == pytest.approx(0.75, abs=0.02)
    assert compared["realised"]["accuracy"] == pytest.approx(0.25, abs=0.02)
    assert compared["error"]["accuracy"] == pytest.approx(0.5, abs=0.03)
    errors = ledger.errors()[("v1", "champion")]
    assert errors["windows"] == 1
    assert errors["mean_abs_error"]["accuracy"] == pytest.approx(compared["error"]["accuracy"])


def test_a_window_settles_when_its_labels_are_in_or_too_late_to_come() -> None:
    ledger = EstimateLedger("binary_classification", None, 0.5, 60_000, settle_ms=600_000,
                            settle_coverage=0.9, min_labels=10)  # fmt: skip
    p, labels = _calibrated(100, 0.1, 0.9, seed=2)
    for window in (0, 1):
        at = T0 + window * 60_000 + 5
        ledger.add_estimates("v1", "champion", "cbpe", np.full(100, at), cbpe_terms(p, 0.5), p)
    # window 0: 95 of 100 labels; window 1: 50 of 100
    for i in range(95):
        ledger.add_label("v1", "champion", T0 + 5, float(p[i]), float(labels[i]))
    for i in range(50):
        ledger.add_label("v1", "champion", T0 + 60_005, float(p[i]), float(labels[i]))
    assert [c["window_start"] for c in ledger.settle(T0 + 59_000)] == []  # not ended
    assert [c["window_start"] for c in ledger.settle(T0 + 130_000)] == [T0]
    assert ledger.settle(T0 + 700_000) == []  # window 1 ended 580 s ago: still waiting
    [late] = ledger.settle(T0 + 720_001)  # max delay passed: compared on the labels it has
    assert late["window_start"] == T0 + 60_000
    assert late["labels"] == 50
    assert late["predictions"] == 100


def test_labels_of_versions_not_estimated_here_are_ignored() -> None:
    ledger = EstimateLedger("regression", 1.0, 0.5, 60_000, settle_ms=1_000)
    ledger.add_label("elsewhere", "champion", T0, 1.0, 2.0)
    assert ledger.settle(T0 + 10**9) == []


def _heteroscedastic(rows: int, low: float, high: float, seed: int):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    x = rng.uniform(low, high, (rows, 2))
    truth = 3 * x[:, 0] + x[:, 1]
    y = truth + rng.normal(0, 0.5 + x[:, 0], rows)  # noisier where x0 is large
    return x, truth, y  # 'truth' is what a perfect model predicts


def test_dle_follows_a_covariate_shift_into_noisier_inputs() -> None:
    x, predicted, y = _heteroscedastic(6_000, 0, 2, seed=1)
    fitted = fit_loss_models(x, predicted, y)
    assert fitted is not None
    assert set(fitted.texts) == {"abs_error", "sq_error"}
    check = fitted.report["held_out_check"]["mae"]
    assert check["estimated"] == pytest.approx(check["realised"], rel=0.1)
    estimator = Estimator("dle", loss=LossEstimator(fitted.texts))
    shifted_x, shifted_pred, shifted_y = _heteroscedastic(6_000, 1, 2, seed=2)
    before_x, before_pred, before_y = _heteroscedastic(6_000, 0, 2, seed=3)
    for features, values, labels in ((before_x, before_pred, before_y),
                                     (shifted_x, shifted_pred, shifted_y)):  # fmt: skip
        sums = EstimateSums()
        sums.add(estimator.terms(features, values), None)
        estimated = estimated_metrics("dle", [sums])
        realised_mae = float(np.mean(np.abs(values - labels)))
        realised_rmse = float(np.sqrt(np.mean((values - labels) ** 2)))
        assert estimated["mae"] == pytest.approx(realised_mae, rel=0.08)
        assert estimated["rmse"] == pytest.approx(realised_rmse, rel=0.08)
    assert fit_loss_models(x[:50], predicted[:50], y[:50]) is None  # too few rows


def test_rolling_estimates_forget_predictions_older_than_the_window() -> None:
    rolling = RollingEstimates(window_ms=60_000)
    p = np.full(10, 0.9)
    rolling.add("v1", "champion", "cbpe", cbpe_terms(p, 0.5), p, T0)
    rolling.add("v1", "champion", "cbpe", cbpe_terms(p / 9, 0.5), p / 9, T0 + 50_000)
    both = rolling.snapshot(T0 + 55_000)[("v1", "champion")]
    assert both["predictions"] == 20
    assert both["accuracy"] == pytest.approx(0.9)
    later = rolling.snapshot(T0 + 61_000)[("v1", "champion")]
    assert later["predictions"] == 10
    assert later["accuracy"] == pytest.approx(0.9)  # 0.1 predicted: right 90% of the time


def test_skill_compares_with_a_constant_on_the_same_labels() -> None:
    rng = np.random.default_rng(4)
    labels = (rng.random(5_000) < 0.2).astype(float)
    constant, useful = AccuracySums(), AccuracySums()
    for actual in labels.tolist():
        constant.add("binary_classification", 0.0, 0.5, 0.2, actual)
        useful.add("binary_classification", 0.0, 0.5, 0.9 if actual else 0.05, actual)
    assert accuracy_metrics("binary_classification", [constant])["skill"] == pytest.approx(
        0.0, abs=0.01
    )
    assert accuracy_metrics("binary_classification", [useful])["skill"] > 0.5
    regression = AccuracySums()
    values = rng.normal(10, 2, 2_000)
    for actual in values.tolist():
        regression.add("regression", 1.0, 0.5, actual + 1.0, actual)  # off by 1, variance 4
    assert accuracy_metrics("regression", [regression])["skill"] == pytest.approx(
        1 - 1 / float(np.var(values)), abs=1e-6
    )
    assert (
        skill_of(
            "binary_classification",
            {"validation": {"log_loss": 0.25}, "constant_baseline": {"log_loss": 0.5}},
        )
        == 0.5
    )
    assert (
        skill_of("regression", {"validation": {"rmse": 1.0}, "constant_baseline": {"rmse": 2.0}})
        == 0.75
    )
    assert skill_of("regression", {}) is None


def test_the_monitor_reports_estimates_beside_realised_values_and_their_error() -> None:
    use_case = load_use_case("machine_failure")
    monitor = Monitor(use_case, MonitoringSettings(accuracy_window_s=60, estimate_min_labels=10))
    monitor.set_model("champion", "v1", use_case.feature_names, {}, Estimator("cbpe"))
    p, labels = _calibrated(400, 0.05, 0.95, seed=6)
    now = int(time.time() * 1000)
    event_ms = now - 120_000  # two windows ago: settled once its labels are in
    matrix = np.zeros((len(p), len(use_case.feature_names)))
    monitor.scored("v1", "champion", matrix, p, [1.0] * len(p), now,
                   np.full(len(p), event_ms, dtype=np.int64))  # fmt: skip
    for predicted, actual in zip(p.tolist(), labels.tolist(), strict=True):
        monitor.labelled("v1", "champion", predicted, actual, now, event_ms)
    [entry] = monitor.snapshot()["estimates"]
    assert entry["method"] == "cbpe"
    assert entry["predictions"] == 400
    assert set(entry["estimated"]) == {"accuracy", "log_loss", "auc"}
    assert entry["realised"]["accuracy"] == pytest.approx(np.mean((p >= 0.5) == labels))
    assert entry["windows_compared"] == 1
    assert entry["estimate_error"]["accuracy"] < 0.06
    families = {f.name: f for f in MonitorCollector(monitor).collect()}
    estimated = {s.labels["metric"]: s.value for s in
                 families["stream_app_model_metric_estimated"].samples}  # fmt: skip
    assert estimated["accuracy"] == pytest.approx(entry["estimated"]["accuracy"])
    assert families["stream_app_estimate_error"].samples
    assert families["stream_app_model_skill"].samples
    registry = CollectorRegistry()
    registry.register(MonitorCollector(monitor))  # the exposition accepts them


# -- the orchestrator's triggers -------------------------------------------------------------

POLICY = LifecycleSettings(min_labels=100, degradation_for_s=0)
ALARMS = [{"feature": f, "psi": 3.0, "ks": 0.6, "values": 900} for f in ("a", "b", "c")]


def _check(rolling: dict[str, float], evidence: Evidence, **kw: object) -> object:
    arguments: dict[str, object] = {
        "watch": Watch("v1"), "metric": "log_loss", "reference": 0.5, "rolling": rolling,
        "drift_alarms": [], "champion_created_ms": 0, "now_ms": 1000, "settings": POLICY,
        "evidence": evidence, **kw,
    }  # fmt: skip
    return assess(**arguments)  # type: ignore[arg-type]


NO_SKILL = {"labels": 500.0, "log_loss": 0.32, "skill": -0.01}  # better than validation's 0.5


def test_no_skill_with_most_features_drifting_retrains_though_the_metric_looks_fine() -> None:
    no_validation_skill = Evidence(validation_skill=0.0, monitored_features=4)
    trigger = _check(NO_SKILL, no_validation_skill, drift_alarms=ALARMS,
                     settings=LifecycleSettings(min_labels=100, degradation_for_s=0,
                                                retrain_on_drift=False))  # fmt: skip
    assert trigger is not None
    assert trigger.kind == "no_skill"  # type: ignore[attr-defined]
    assert any("75% of its 4 monitored features drift" in r for r in trigger.reasons)  # type: ignore[attr-defined]
    # one feature of four drifting, and no skill to lose: nothing to judge by
    assert _check(NO_SKILL, no_validation_skill, drift_alarms=ALARMS[:1],
                  settings=LifecycleSettings(min_labels=100, degradation_for_s=0,
                                             retrain_on_drift=False)) is None  # fmt: skip


def test_a_champion_that_lost_its_validation_skill_retrains() -> None:
    trigger = _check(NO_SKILL, Evidence(validation_skill=0.3, monitored_features=4))
    assert trigger is not None
    assert trigger.kind == "no_skill"  # type: ignore[attr-defined]
    assert _check({**NO_SKILL, "skill": 0.2}, Evidence(validation_skill=0.3)) is None
    off = LifecycleSettings(min_labels=100, degradation_for_s=0, retrain_on_no_skill=False)
    assert _check(NO_SKILL, Evidence(validation_skill=0.3), settings=off) is None
    assert _check({**NO_SKILL, "labels": 50.0}, Evidence(validation_skill=0.3)) is None


def test_an_estimated_degradation_retrains_only_when_the_settings_say_so() -> None:
    fine = {"labels": 0.0}
    estimate = Evidence(estimated={"predictions": 800.0, "log_loss": 0.9},
                        estimate_method="cbpe")  # fmt: skip
    assert _check(fine, estimate) is None  # act_on_estimates is off by default
    acting = LifecycleSettings(min_labels=100, degradation_for_s=0, act_on_estimates=True)
    trigger = _check(fine, estimate, settings=acting)
    assert trigger is not None
    assert trigger.kind == "estimated_degradation"  # type: ignore[attr-defined]
    assert trigger.details["before_labels"] is True  # type: ignore[attr-defined]
    assert "before their labels" in trigger.reasons[0]  # type: ignore[attr-defined]
    few = Evidence(estimated={"predictions": 50.0, "log_loss": 0.9}, estimate_method="cbpe")
    assert _check(fine, few, settings=acting) is None
    healthy = Evidence(estimated={"predictions": 800.0, "log_loss": 0.55}, estimate_method="cbpe")
    assert _check(fine, healthy, settings=acting) is None
