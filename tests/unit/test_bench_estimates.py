"""`bench estimates` on a small simulated world: the covariate world's estimate follows the
realised change, the concept world's misses it, and the report says so."""

from __future__ import annotations

from stream_app.bench.estimates import run, worlds
from stream_app.settings import Settings
from stream_app.use_cases.spec import load_use_case


def test_worlds_split_the_spec_drift_into_inputs_and_relation() -> None:
    found = worlds(load_use_case("machine_failure"))
    assert set(found) == {"covariate", "covariate_spec", "concept"}
    for kind, world in found.items():
        drift = world.simulation.drift  # type: ignore[union-attr]
        moves_inputs = bool(drift.event or drift.reading)
        moves_relation = bool(drift.label or drift.derived)
        assert (moves_inputs, moves_relation) == {
            "covariate": (False, False),  # resampled on the inputs, not by the spec
            "covariate_spec": (True, False),
            "concept": (False, True),
        }[kind]


def test_cbpe_follows_a_covariate_shift_and_misses_a_concept_drift() -> None:
    report = run(Settings(), load_use_case("machine_failure"), train_days=1.0, hours=12.0,
                 events_per_day=40_000, window_s=3600)  # fmt: skip
    assert report["method"] == "cbpe"
    covariate, concept = report["worlds"]["covariate"], report["worlds"]["concept"]
    assert covariate["selection"]["feature"] in load_use_case("machine_failure").feature_names
    # the covariate shift lowers accuracy, and the estimate goes most of the way with it
    drop = covariate["realised_before"] - covariate["realised_after"]
    assert drop > 0.02
    estimated_drop = covariate["estimated_before"] - covariate["estimated_after"]
    assert estimated_drop > 0.6 * drop
    # the concept drift: the estimate stays put while the realised accuracy falls
    assert concept["realised_change"] > 0.05
    assert abs(concept["missed_by_after_drift"]) > 0.6 * concept["realised_change"]
    assert concept["estimate_mae_after_drift"] > 3 * covariate["estimate_mae_after_drift"]
    assert "missed the concept drift" in report["concept_drift"]
    # a perfect estimate (labels with their predictions) signals the concept drift; CBPE never
    assert concept["perfect_lead_vs_median_label_delay"] is not None
    assert concept["signal_s_after_drift"]["estimated"] is None
    assert set(report["targets"]) == {"covariate_error_within_20pct_of_change",
                                      "covariate_signal_a_label_delay_earlier"}  # fmt: skip
