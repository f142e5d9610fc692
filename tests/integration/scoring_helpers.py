"""Shared set-up of the in-process scoring tests: a champion, features, client events."""

from __future__ import annotations

import time

import numpy as np

from stream_app.cassandra_session import connected
from stream_app.messages import InputMessage
from stream_app.settings import Settings
from stream_app.simulation.payloads import client_event_records
from stream_app.simulation.seeded import preload_features, prepare_model
from stream_app.simulation.world import World
from stream_app.use_cases.spec import load_use_case


def ready_world(settings: Settings, seed: int = 7) -> World:
    """A champion and preloaded features for every simulated entity."""
    use_case = load_use_case(settings.use_case)
    with connected(settings.cassandra) as session:
        world = World(use_case, seed)
        prepare_model(session, settings, use_case, seed)
        preload_features(session, settings, world)
    return world


def client_messages(
    world: World, count: int, prefix: str, settings: Settings, partition: int = 0
) -> list[InputMessage]:
    """``count`` valid client events as consumed messages, ids ``<prefix>-<i>``."""
    now = int(time.time() * 1000)
    events = world.client_events(np.full(count, now, dtype=np.int64))
    records = client_event_records(world, events, [f"{prefix}-{i}" for i in range(count)])
    topic = settings.kafka.topics.client_events
    return [InputMessage(topic, partition, i, k, v, now) for i, (k, v) in enumerate(records)]
