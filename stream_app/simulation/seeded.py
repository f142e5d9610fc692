"""A simulated deployment ready to score, in a keyspace: a champion trained on the simulated
world and fresh features for every simulated entity.

The benchmarks and the in-process tests start from this state, so they score at once instead of
waiting for the feature agent and a training run.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
from cassandra.cluster import Session

from stream_app.features.pane_store import PaneStore
from stream_app.features.panes import PaneAggregator, aggregate_groups
from stream_app.features.store import CassandraFeatureStore, FeatureRow
from stream_app.models.registry import ModelRegistry
from stream_app.models.trainer import describe_version
from stream_app.models.training import lightgbm_params
from stream_app.settings import Settings
from stream_app.simulation.history import labelled_frame
from stream_app.simulation.payloads import sensor_readings
from stream_app.simulation.world import World
from stream_app.use_cases.spec import UseCase


def prepare_model(session: Session, settings: Settings, use_case: UseCase, seed: int) -> str:
    """A champion trained on one simulated day (in memory), registered in the bench keyspace."""
    registry = ModelRegistry(session, settings.cassandra.keyspace, use_case.name)
    existing = registry.roles().get("champion")
    if existing is not None:
        return existing.version
    version = register_simulated_model(session, settings, use_case, seed)
    registry.assign("champion", version, "simulated champion")
    return version


def register_simulated_model(
    session: Session, settings: Settings, use_case: UseCase, seed: int, rounds: int = 200
) -> str:
    """A version trained on one simulated day of world ``seed`` (in memory), registered
    without a role."""
    from stream_app.models.lgb import lgb

    registry = ModelRegistry(session, settings.cassandra.keyspace, use_case.name)
    world = World(use_case, seed)
    x, y = labelled_frame(world, int(time.time() * 1000) - 86_400_000, 1, 20_000)
    params = lightgbm_params(use_case, settings.training)
    booster = lgb.train(params, lgb.Dataset(x, y), num_boost_round=rounds)
    model = describe_version(
        use_case, params,
        training_window={"source": f"one simulated day of world {seed}, in memory"},
    )  # fmt: skip
    registry.register(model, booster.model_to_string())
    return model.version


def preload_features(session: Session, settings: Settings, world: World) -> int:
    """Panes of fresh simulated readings for every simulated entity (as the feature agent
    would have written them) and the batch features (as `features load` would). Returns the
    rows written."""
    use_case = world.use_case
    now = int(time.time() * 1000)
    aggregator = PaneAggregator(aggregate_groups(use_case))
    readings = []
    for key in world.sim.reading_entities:
        for index in range(world.sim.population[key]):
            times = np.sort(now - np.random.default_rng(index).integers(1_000, 60_000, 8))
            batch = world.readings(times, fixed={key: np.full(8, index)})
            readings += sensor_readings(world, batch)
    readings.sort(key=lambda r: r.event_time)
    aggregator.load(aggregator.unknown_panes((0, r) for r in readings), {})
    for offset, reading in enumerate(readings):
        aggregator.apply(0, offset, reading)
    panes = PaneStore(
        session, settings.cassandra.keyspace, use_case.name,
        retention_s=int(settings.features.retention_days * 86_400),
    )  # fmt: skip
    dirty = aggregator.take_dirty()
    asyncio.run(panes.write(panes.snapshot(dirty)))
    store = CassandraFeatureStore(session, settings.cassandra.keyspace, use_case)
    rows = [
        FeatureRow(entity, world.ids[entity][index], name, value, now, None)
        for name, (entity, values) in world.batch_features().items()
        for index, value in enumerate(values.tolist())
    ]
    return store.write(rows) + len(dirty)
