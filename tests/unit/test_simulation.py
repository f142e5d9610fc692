"""The simulated world: reproducible, decodable, learnable, and drift hurts an old model."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from stream_app.bench.simulation import loss
from stream_app.contracts.decode import (
    decode_client_event,
    decode_ground_truth,
    decode_sensor_reading,
)
from stream_app.simulation.corrupt import CORRUPTIONS, corrupt
from stream_app.simulation.history import history_chunks, labelled_frame
from stream_app.simulation.payloads import (
    client_event_records,
    ground_truth_records,
    reading_records,
)
from stream_app.simulation.world import DAY_MS, World
from stream_app.use_cases.spec import UseCase, load_use_case

T0 = 1_795_000_000_000


def _frame(
    world: World, start: int, days: float, drift_at: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    return labelled_frame(world, start, days, 8_000, drift_at)


def _train(use_case: UseCase, x: np.ndarray, y: np.ndarray) -> lgb.Booster:
    objective = "regression" if use_case.task == "regression" else "binary"
    params = {"objective": objective, "num_threads": 1, "verbose": -1, "seed": 1}
    return lgb.train(params, lgb.Dataset(x, y), num_boost_round=150)


_loss = loss


def test_the_same_seed_gives_the_same_world_and_events() -> None:
    use_case = load_use_case("delivery_eta")
    times = np.full(50, T0, dtype=np.int64)
    a, b = World(use_case, 7), World(use_case, 7)
    assert all(np.array_equal(a.attributes[n][1], b.attributes[n][1]) for n in a.attributes)
    assert np.array_equal(a.client_events(times).labels, b.client_events(times).labels)
    assert not np.array_equal(
        World(use_case, 8).client_events(times).labels,
        World(use_case, 7).client_events(times).labels,
    )


@pytest.mark.parametrize("name", ["delivery_eta", "machine_failure"])
def test_simulated_records_decode(name: str) -> None:
    world = World(load_use_case(name), 3)
    events = world.client_events(np.full(200, T0, dtype=np.int64))
    ids = [f"e-{i}" for i in range(200)]
    for key, value in client_event_records(world, events, ids):
        assert decode_client_event(value).event_id == key.decode()
    for key, value in reading_records(world, world.readings(np.full(200, T0, dtype=np.int64))):
        assert decode_sensor_reading(value).sensor_id == key.decode()
    labels = events.labels.tolist()
    for _, value in ground_truth_records(ids, labels, [T0 + 1] * 200):
        decode_ground_truth(value)
    codes = {corrupt(client_event_records(world, events, ids)[0][1], i)[0] for i in range(22)}
    assert codes == set(CORRUPTIONS)


@pytest.mark.parametrize(("name", "margin"), [("delivery_eta", 0.4), ("machine_failure", 0.85)])
def test_a_model_beats_a_constant_and_degrades_after_drift(name: str, margin: float) -> None:
    use_case = load_use_case(name)
    world = World(use_case, 11)
    x, y = _frame(world, T0, 4)
    model = _train(use_case, x, y)
    x_test, y_test = _frame(world, T0 + 4 * DAY_MS, 1)
    after = T0 + 5 * DAY_MS
    x_drift, y_drift = _frame(world, after, 1, drift_at=after)

    model_loss = _loss(use_case, model.predict(x_test), y_test)
    constant_loss = _loss(use_case, np.full(len(y_test), y.mean()), y_test)
    drift_loss = _loss(use_case, model.predict(x_drift), y_drift)
    assert model_loss < margin * constant_loss, (model_loss, constant_loss)
    assert drift_loss > 1.2 * model_loss, (drift_loss, model_loss)


def test_history_vectors_use_the_served_features(tmp_path: Path) -> None:
    use_case = load_use_case("delivery_eta")
    chunk = next(history_chunks(World(use_case, 5), T0, T0 + DAY_MS, "h", None, 2_000))
    vectors = np.array(chunk.vectors)
    assert vectors.shape == (len(chunk.event_ids), len(use_case.feature_names))
    speeds = vectors[:, use_case.feature_names.index("courier_speed_mean_10m")]
    assert 5 < np.median(speeds) < 40
    assert max(chunk.ages_ms) <= 15 * 60_000  # streaming features never older than max_age
    assert any(chunk.missing)  # quiet couriers: some windows hold no reading -> defaults


THIRD_USE_CASE = """
name = "energy_demand"
task = "regression"
metrics = ["mae"]
[entities]
keys = ["building_id"]
split_key = "building_id"
[label]
name = "kwh_next_hour"
max_delay = "2h"
tolerance = 2.0
[readings]
kw = "kW"
[features.outdoor_c]
source = "event"
default = 15.0
[features.load_mean_30m]
source = "aggregate"
entity = "building_id"
reading = "kw"
function = "mean"
window = { kind = "tumbling", size = "30m" }
default = 10.0
[simulation]
population = { building_id = 40 }
reading_entities = ["building_id"]
sensor_id = "meter-{building_id}"
label = "base_kw * (1 + 0.03 * abs(outdoor_c - 18)) + normal(0, 0.5)"
label_delay_s = "3600"
reading_interval = "20s"
[simulation.attributes]
base_kw = { entity = "building_id", value = "uniform(5, 40)" }
[simulation.event]
outdoor_c = "normal(12, 8)"
[simulation.reading]
kw = "base_kw * normal(1, 0.05)"
"""


def test_a_third_use_case_needs_only_a_spec_file(tmp_path: Path) -> None:
    path = tmp_path / "energy_demand.toml"
    path.write_text(THIRD_USE_CASE)
    use_case = load_use_case(str(path))
    world = World(use_case, 1)
    x, y = _frame(world, T0, 2)
    model = _train(use_case, x, y)
    x_test, y_test = _frame(world, T0 + 2 * DAY_MS, 0.5)
    assert _loss(use_case, model.predict(x_test), y_test) < 0.5 * _loss(
        use_case, np.full(len(y_test), y.mean()), y_test
    )
