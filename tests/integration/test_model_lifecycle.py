"""The model lifecycle in-process against the real Kafka and Cassandra: role changes through
the registry and both topics, A/B traffic by entity, and shadow scoring on its own topic.

(The swap at a batch boundary is unit-tested through in-memory stores, in
``tests/unit/test_scoring_service_core.py`` and ``test_model_watcher_core.py``; a swap in two
running workers, every event scored once, is in ``tests/e2e/test_lifecycle.py``.)"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import orjson
import pytest

from stream_app.cassandra_session import connected
from stream_app.errors import ModelNotFound, StreamAppError
from stream_app.models.registry import ModelRegistry
from stream_app.models.roles import Roles, actor
from stream_app.runtime.dependencies import Dependencies, build_dependencies
from stream_app.scoring.model_set import split_traffic
from stream_app.simulation.seeded import register_simulated_model
from stream_app.storage.predictions import PredictionStore
from stream_app.use_cases.spec import load_use_case
from tests.conftest import Deployment, consume_all
from tests.integration.scoring_helpers import client_messages, ready_world


def _versions(deployment: Deployment, count: int) -> tuple[str, list[str]]:
    """The champion and ``count`` more registered versions (different worlds)."""
    settings = deployment.settings
    use_case = load_use_case(settings.use_case)
    with connected(settings.cassandra) as session:
        registry = ModelRegistry(session, settings.cassandra.keyspace, use_case.name)
        champion = registry.champion().version
        others = [
            register_simulated_model(session, settings, use_case, seed=100 + i, rounds=60)
            for i in range(count)
        ]
    return champion, others


def _lifecycle(deps: Dependencies, deployment: Deployment) -> Roles:
    return Roles(deps.use_cases[0].registry, deployment.settings.kafka, actor("cli"))


def _couriers(messages: list[Any], prefix: str) -> dict[bytes, str]:
    """The courier (the split key) of each event id ``<prefix>-<i>`` of ``client_messages``."""
    return {
        f"{prefix}-{i}".encode(): orjson.loads(m.value or b"")["entities"]["courier_id"]
        for i, m in enumerate(messages)
    }


async def _until(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def test_roles_go_through_the_registry_and_both_topics_and_roll_back(
    deployment: Deployment, prometheus_registry: Any
) -> None:
    ready_world(deployment.settings)
    first, (second, third) = _versions(deployment, 2)
    deps = build_dependencies(deployment.settings, prometheus_registry)
    try:
        lifecycle = _lifecycle(deps, deployment)
        with pytest.raises(ModelNotFound, match="no previous champion"):
            lifecycle.rollback("nothing to go back to")
        lifecycle.assign("challenger", second, "trial", traffic=0.25)
        with pytest.raises(StreamAppError, match="only a challenger"):
            lifecycle.assign("shadow", third, "trial", traffic=0.5)
        with pytest.raises(StreamAppError, match="is the champion"):
            lifecycle.assign("shadow", first, "trial")
        changes = lifecycle.promote(second, "better")
        # the challenger role is cleared before the version takes the champion's
        assert [(c.role, c.version, c.previous) for c in changes] == [
            ("challenger", None, second),
            ("champion", second, first),
        ]
        assert deps.use_cases[0].registry.get(first).status == "retired"
        assert deps.use_cases[0].registry.get(second).status == "champion"
        assert lifecycle.previous_champion() == first
        lifecycle.promote(third, "even better")
        restored = lifecycle.rollback("third misbehaves")
        assert (restored.version, restored.previous) == (second, third)
        assert deps.use_cases[0].registry.champion().version == second
    finally:
        deps.close()
    topics = deployment.settings.kafka.topics
    settings = deployment.settings
    updates = [orjson.loads(m.value()) for m in consume_all(settings, topics.model_updates, 5)]
    assert [(u["role"], u["model_version"]) for u in updates] == [
        ("challenger", second), ("challenger", None), ("champion", second),
        ("champion", third), ("champion", second),
    ]  # fmt: skip
    assert updates[0]["traffic_fraction"] == 0.25
    records = consume_all(settings, topics.model_decisions, 4)
    decisions = [orjson.loads(m.value()) for m in records]
    actions = [d["action"] for d in decisions]
    assert actions == ["role_assigned", "promoted", "promoted", "rolled_back"]
    assert decisions[-1]["reasons"] == ["third misbehaves"]
    assert decisions[-1]["champion_version"] == third
    assert all(d["decided_by"].startswith("cli@") for d in decisions)


def test_a_b_traffic_by_entity_and_shadow_scoring_on_its_own_topic(
    deployment: Deployment, prometheus_registry: Any
) -> None:
    settings = deployment.settings
    world = ready_world(settings)
    champion, (challenger, shadow) = _versions(deployment, 2)
    messages = client_messages(world, 600, "ab", settings)
    deps = build_dependencies(settings, prometheus_registry)
    try:
        service, watcher = deps.use_cases[0].scoring, deps.use_cases[0].watcher
        assert service is not None
        assert watcher is not None
        lifecycle = _lifecycle(deps, deployment)

        async def scenario() -> Any:
            await watcher.start()
            try:
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(
                    None, lambda: lifecycle.assign("challenger", challenger, "A/B", 0.4)
                )
                await loop.run_in_executor(None, lambda: lifecycle.assign("shadow", shadow, "s"))
                await _until(lambda: service.models.shadow is not None, 30, "the shadow")
                return await service.process(messages)
            finally:
                await watcher.stop()

        result = asyncio.run(scenario())
        assert result.predictions == 600
        assert result.shadow_predictions == 600
        predictions = PredictionStore(
            deps.use_cases[0].registry.session,
            settings.cassandra.keyspace,
            deps.use_cases[0].registry.use_case,
        )
        stored = predictions.for_event("ab-0")
    finally:
        deps.close()
    topics = settings.kafka.topics
    records = consume_all(settings, topics.predictions, 600)
    live = {m.key(): orjson.loads(m.value()) for m in records}
    assert len(live) == 600
    couriers = _couriers(messages, "ab")
    ids = sorted(couriers)
    expected = [arm == 0 for arm in split_traffic([couriers[k] for k in ids], [0.4])]
    for event_id, to_the_challenger in zip(ids, expected, strict=True):
        p = live[event_id]
        assert (p["role"], p["model_version"]) == (
            ("challenger", challenger) if to_the_challenger else ("champion", champion)
        )
    share = sum(expected) / len(expected)
    assert 0.2 < share < 0.6  # by courier, so not exactly 40% of events
    by_courier: dict[str, set[str]] = {}
    for event_id, p in live.items():
        by_courier.setdefault(couriers[event_id], set()).add(p["role"])
    assert all(len(roles) == 1 for roles in by_courier.values())  # an entity stays on one side
    shadowed = consume_all(settings, topics.predictions_shadow, 600)
    assert Counter(m.key() for m in shadowed) == Counter({k: 1 for k in live})
    payloads = [orjson.loads(m.value()) for m in shadowed]
    assert {(p["role"], p["model_version"]) for p in payloads} == {("shadow", shadow)}
    assert {row.role for row in stored} == {live[b"ab-0"]["role"], "shadow"}  # both stored


def test_three_versions_split_live_traffic_each_tracked_apart(
    deployment: Deployment, prometheus_registry: Any
) -> None:
    settings = deployment.settings
    world = ready_world(settings)
    champion, (first, second) = _versions(deployment, 2)
    messages = client_messages(world, 900, "abn", settings)
    deps = build_dependencies(settings, prometheus_registry)
    try:
        scoring = deps.use_cases[0]
        service, watcher, registry = scoring.scoring, scoring.watcher, scoring.registry
        assert service is not None
        assert watcher is not None
        lifecycle = _lifecycle(deps, deployment)
        lifecycle.assign("challenger", first, "A/B/N", 0.3)
        lifecycle.assign("challenger", second, "A/B/N", 0.3)  # beside it, not instead
        roles = registry.roles()
        assert {r: (a.version, a.traffic_fraction) for r, a in roles.items()
                if r != "champion"} == {"challenger": (first, 0.3),
                                        "challenger-2": (second, 0.3)}  # fmt: skip
        with pytest.raises(StreamAppError, match="at most 100%"):
            lifecycle.assign("challenger", second, "too much", 0.8)  # its slot, a larger share

        async def scenario() -> Any:
            await watcher.start()
            try:
                watcher.load()
                return await service.process(messages)
            finally:
                await watcher.stop()

        result = asyncio.run(scenario())
        assert result.predictions == 900
        assert result.versions == {"champion": champion, "challenger": first,
                                   "challenger-2": second}  # fmt: skip
        snapshot = scoring.monitor.snapshot()
        assert snapshot["traffic"] == pytest.approx(
            {"champion": 0.4, "challenger": 0.3, "challenger-2": 0.3}
        )
        # each version is tracked apart: its own rolling figures
        counted = {e["model_version"]: e["predictions"] for e in snapshot["accuracy"]}
        assert set(counted) == {champion, first, second}
        assert sum(counted.values()) == 900
        changes = lifecycle.clear("challenger", second, "enough")
        assert [(c.role, c.version) for c in changes] == [("challenger-2", None)]
        assert set(registry.roles()) == {"champion", "challenger"}
    finally:
        deps.close()
    live = {m.key(): orjson.loads(m.value())
            for m in consume_all(settings, settings.kafka.topics.predictions, 900)}  # fmt: skip
    assert len(live) == 900
    couriers = _couriers(messages, "abn")
    ids = sorted(couriers)
    arms = split_traffic([couriers[k] for k in ids], [0.3, 0.3])
    version_of = {-1: champion, 0: first, 1: second}
    for event_id, arm in zip(ids, arms, strict=True):
        assert live[event_id]["model_version"] == version_of[arm]
        assert live[event_id]["role"] == ("champion" if arm == -1 else "challenger")
    shares = Counter(arms)
    assert all(shares[arm] > 100 for arm in (-1, 0, 1)), shares  # by courier: roughly 40/30/30
    updates = [orjson.loads(m.value())
               for m in consume_all(settings, settings.kafka.topics.model_updates, 3)]  # fmt: skip
    # in order per key (one key, one partition; the two keys' partitions interleave freely)
    by_slot: dict[str, list[str | None]] = {}
    for update in updates:
        by_slot.setdefault(update["role"], []).append(update["model_version"])
    assert by_slot == {"challenger": [first], "challenger-2": [second, None]}
