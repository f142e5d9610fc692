"""Models trained elsewhere: JSON dumps converted losslessly, features and task checked."""

from __future__ import annotations

import json
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from stream_app.errors import ConfigurationError
from stream_app.models.importing import (
    aligned_text,
    check_task,
    feature_mismatch,
    read_model_file,
)
from stream_app.models.lightgbm_json import text_from_json_dump
from stream_app.use_cases.spec import load_use_case

MACHINES = load_use_case("machine_failure")
NAMES = MACHINES.feature_names


def train(objective: str, names: list[str] | None, rounds: int = 25, seed: int = 0) -> lgb.Booster:
    rng = np.random.default_rng(seed)
    width = len(names) if names else len(NAMES)
    x = rng.normal(size=(3000, width))
    x[rng.random(3000) < 0.1, 1] = np.nan
    x[rng.random(3000) < 0.2, 2] = 0.0
    signal = x[:, 0] + np.nan_to_num(x[:, 1]) - 0.5 * x[:, 2]
    y = (signal > 0).astype(float) if objective == "binary" else np.abs(3 * signal) + 1
    params = {"objective": objective, "num_leaves": 15, "verbose": -1, "num_threads": 1,
              "seed": seed, "min_data_in_leaf": 5}  # fmt: skip
    data = lgb.Dataset(x, y, feature_name=names) if names else lgb.Dataset(x, y)
    return lgb.train(params, data, num_boost_round=rounds)


@pytest.mark.parametrize("objective", ["binary", "regression", "regression_l1", "huber", "poisson"])
def test_a_json_dump_converts_to_a_model_that_predicts_the_same(objective: str) -> None:
    booster = train(objective, NAMES)
    converted = lgb.Booster(model_str=text_from_json_dump(json.loads(json.dumps(
        booster.dump_model()))))  # fmt: skip
    rng = np.random.default_rng(9)
    x = rng.normal(size=(20_000, len(NAMES)))
    x[rng.random(20_000) < 0.2, 1] = np.nan
    x[rng.random(20_000) < 0.2, 2] = 0.0
    assert converted.num_trees() == booster.num_trees()
    assert converted.feature_name() == NAMES
    assert np.array_equal(converted.predict(x, num_threads=1), booster.predict(x, num_threads=1))


def test_a_tree_of_one_leaf_converts_too() -> None:
    x = np.random.default_rng(1).normal(size=(200, 3))
    booster = lgb.train({"objective": "regression", "verbose": -1, "min_data_in_leaf": 500},
                        lgb.Dataset(x, np.full(200, 7.0)), num_boost_round=2)  # fmt: skip
    converted = lgb.Booster(model_str=text_from_json_dump(booster.dump_model()))
    assert np.array_equal(converted.predict(x), booster.predict(x))


def test_categorical_and_multiclass_json_models_are_refused() -> None:
    rng = np.random.default_rng(2)
    x = np.column_stack([rng.integers(0, 5, 500), rng.normal(size=500)])
    y = (x[:, 0] % 2 == 0).astype(float)
    booster = lgb.train({"objective": "binary", "verbose": -1, "min_data_per_group": 5},
                        lgb.Dataset(x, y, categorical_feature=[0]), num_boost_round=3)  # fmt: skip
    with pytest.raises(ConfigurationError, match="categorical splits"):
        text_from_json_dump(booster.dump_model())
    with pytest.raises(ConfigurationError, match="multiclass"):
        text_from_json_dump({"name": "tree", "tree_info": [], "num_class": 3})


def test_the_features_must_be_the_specs_in_its_order() -> None:
    assert feature_mismatch(NAMES, NAMES) is None
    swapped = [NAMES[1], NAMES[0], *NAMES[2:]]
    assert feature_mismatch(swapped, NAMES) == (
        f"the order differs at column 0: model {NAMES[1]!r}, spec {NAMES[0]!r}; "
        f"1: model {NAMES[0]!r}, spec {NAMES[1]!r}"
    )
    renamed = ["job_length", *NAMES[1:]]
    assert feature_mismatch(renamed, NAMES) == (
        f"the model lacks [{NAMES[0]!r}]; the spec has no ['job_length']"
    )
    assert feature_mismatch(NAMES[:-1], NAMES) == (
        f"the model lacks [{NAMES[-1]!r}]; {len(NAMES) - 1} features in the model, "
        f"{len(NAMES)} in the spec"
    )


def test_a_file_is_read_checked_and_refused_in_one_line(tmp_path: Path) -> None:
    good = tmp_path / "model.txt"
    train("binary", NAMES).save_model(good)
    model = read_model_file(good)
    check_task(model, MACHINES)
    assert aligned_text(model, MACHINES, assume_spec_order=False) == model.text
    with pytest.raises(ConfigurationError, match="does not fit the regression use case"):
        check_task(model, load_use_case("delivery_eta"))

    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(train("binary", ["x", *NAMES[1:]]).dump_model()))
    refusal = (r"does not fit use case machine_failure: the model lacks \['planned_load_pct'\]; "
               r"the spec has no \['x'\]")  # fmt: skip
    with pytest.raises(ConfigurationError, match=refusal):
        aligned_text(read_model_file(wrong), MACHINES, assume_spec_order=False)

    unnamed = tmp_path / "unnamed.txt"
    train("binary", None).save_model(unnamed)
    plain = read_model_file(unnamed)
    with pytest.raises(ConfigurationError, match="pass --assume-spec-order"):
        aligned_text(plain, MACHINES, assume_spec_order=False)
    named = lgb.Booster(model_str=aligned_text(plain, MACHINES, assume_spec_order=True))
    assert named.feature_name() == NAMES

    garbage = tmp_path / "garbage.txt"
    garbage.write_text("this is not a model\n")
    with pytest.raises(ConfigurationError, match="not a LightGBM model"):
        read_model_file(garbage)
    with pytest.raises(ConfigurationError, match="does not exist"):
        read_model_file(tmp_path / "missing.txt")


def test_an_import_fits_its_calibration_and_estimation_on_the_stored_rows() -> None:
    from stream_app.models.importing import validation
    from stream_app.models.training import TrainingSet

    rng = np.random.default_rng(3)
    x = rng.normal(size=(2000, len(NAMES)))
    signal = x[:, 0] + x[:, 1] - 0.5 * x[:, 2]
    noisy = (rng.random(2000) < 1 / (1 + np.exp(-signal))).astype(float)  # labels with noise
    stored = TrainingSet(NAMES, x, noisy, np.arange(2000, dtype=np.int64) * 1000,
                         [str(i) for i in range(2000)])  # fmt: skip
    # trained on noiseless labels: far too sure of itself on the real ones
    confident = train("binary", NAMES, rounds=80)
    metrics, _, held_out = validation(confident, stored, MACHINES, 0, 2_000_000)
    assert held_out is not None
    assert held_out.map is not None
    report = metrics["calibration_map"]
    assert report["ece_after"] < report["ece_before"]
    assert metrics["validation"]["calibration"] < report["ece_before"]  # of what is served
    assert held_out.estimation["method"] == "cbpe"

    eta = load_use_case("delivery_eta")
    regression = train("regression", eta.feature_names, rounds=40)
    width = len(eta.feature_names)
    xr = rng.normal(size=(1500, width))
    yr = np.abs(3 * (xr[:, 0] + xr[:, 1] - 0.5 * xr[:, 2])) + 1 + rng.normal(0, 1, 1500)
    rows = TrainingSet(eta.feature_names, xr, yr, np.arange(1500, dtype=np.int64),
                       [str(i) for i in range(1500)])  # fmt: skip
    _, _, fitted = validation(regression, rows, eta, 0, 1_500)
    assert fitted is not None
    assert set(fitted.loss_models) == {"abs_error", "sq_error"}
    assert fitted.estimation["method"] == "dle"
