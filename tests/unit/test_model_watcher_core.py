"""Hot swap through an in-memory registry: the watcher serves the registry's roles, swaps the
whole set when they change (a batch already running keeps the set it started with), and
leaves the set alone when nothing changed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry

from stream_app.errors import ModelNotFound
from stream_app.lifecycle.watcher import ModelWatcher
from stream_app.models.compiled import CompiledScorer
from stream_app.models.registry import ModelVersion, RoleAssignment
from stream_app.models.scorer import LightGBMScorer
from stream_app.monitoring.prometheus import WorkerMetrics
from stream_app.monitoring.state import Monitor
from stream_app.scoring.service import ScoringService
from stream_app.settings import Settings
from tests.fakes.stores import MemoryFeatures, MemoryPredictions, MemoryRegistry, RecordingPublisher
from tests.unit.test_scoring_service_core import EATS, TOPICS, event

SETTINGS = Settings(scoring={"compiled": False})  # (compiling: the last test)


def version(name: str) -> tuple[ModelVersion, str]:
    rng = np.random.default_rng(len(name))
    x = rng.normal(size=(300, len(EATS.feature_names)))
    booster = lgb.train({"objective": "regression", "verbose": -1}, lgb.Dataset(x, x[:, 0]),
                        num_boost_round=3)  # fmt: skip
    model = ModelVersion(EATS.name, name, 0, EATS.feature_names, EATS.task, "spec")
    return model, booster.model_to_string()


def harness(
    settings: Settings = SETTINGS, collector: CollectorRegistry | None = None
) -> tuple[ModelWatcher, MemoryRegistry, ScoringService, RecordingPublisher]:
    registry = MemoryRegistry(EATS.name)
    for name in ("v1", "v2", "v3"):
        registry.add(*version(name))
    registry.assigned["champion"] = RoleAssignment("champion", "v1", None, 0, "first")
    publisher = RecordingPublisher()
    metrics = WorkerMetrics(collector or CollectorRegistry())
    monitor = Monitor(EATS, SETTINGS.monitoring)
    service = ScoringService(
        settings=settings, use_case=EATS, features=MemoryFeatures(),
        predictions=MemoryPredictions(), publisher=publisher, metrics=metrics, monitor=monitor,
    )  # fmt: skip
    return ModelWatcher(settings, registry, service, monitor, metrics), registry, service, publisher


def test_the_watcher_serves_the_roles_and_swaps_between_batches() -> None:
    watcher, registry, service, publisher = harness()
    watcher.load()
    assert service.models.roles() == {"champion": "v1"}

    async def scenario() -> Any:
        hold = publisher.gate.hold()
        running = asyncio.ensure_future(service.process([event(1)]))
        await asyncio.sleep(0.02)
        registry.assigned["champion"] = RoleAssignment("champion", "v2", None, 1, "better")
        registry.assigned["shadow"] = RoleAssignment("shadow", "v3", None, 1, "try")
        assert await watcher.refresh() is True
        assert await watcher.refresh() is False  # nothing changed since
        hold.set()
        first = await running
        publisher.gate.held = None
        second = await service.process([event(2)])
        return first, second

    first, second = asyncio.run(scenario())
    assert first.versions == {"champion": "v1"}  # the batch kept the set it started with
    assert second.versions == {"champion": "v2", "shadow": "v3"}
    shadow = [orjson.loads(r.value) for r in publisher.on(TOPICS.predictions_shadow)]
    assert [(p["event_id"], p["model_version"]) for p in shadow] == [("e2", "v3")]
    assert watcher.monitor.snapshot()["switches"][-1]["changed"] == ["champion", "shadow"]


def test_no_champion_is_refused_saying_what_to_do() -> None:
    watcher, registry, _, _ = harness()
    registry.assigned.clear()
    with pytest.raises(ModelNotFound, match="no champion model"):
        watcher.load()


def test_a_version_is_served_by_lightgbm_at_once_and_by_its_compiled_code_when_ready(
    tmp_path: Path,
) -> None:
    settings = Settings(scoring={"compiled": True}, services={"home": tmp_path})
    metrics = CollectorRegistry()
    watcher, _, service, publisher = harness(settings, metrics)
    watcher.load()  # before the loop runs: nothing is compiled yet
    assert type(service.models.champion.scorer) is LightGBMScorer

    async def scenario() -> tuple[Any, Any]:
        first = await service.process([event(1)])
        watcher._compile_served()  # what `start` does once the loop runs
        for _ in range(600):
            if isinstance(service.models.champion.scorer, CompiledScorer):
                break
            await asyncio.sleep(0.05)
        second = await service.process([event(1)])
        return first, second

    first, second = asyncio.run(scenario())
    assert isinstance(service.models.champion.scorer, CompiledScorer)
    assert first.versions == second.versions == {"champion": "v1"}
    values = [orjson.loads(r.value)["value"] for r in publisher.on(TOPICS.predictions)]
    assert len(values) == 2
    assert abs(values[0] - values[1]) <= 1e-9 * max(1.0, abs(values[0]))  # the same answer
    assert metrics.get_sample_value("stream_app_scorers_loaded_total", {"kind": "compiled"}) == 1
    assert not watcher.monitor.snapshot()["switches"]  # not a model switch: same roles
    # compiled quickly (no inlining), kept for the next start
    assert list((tmp_path / "compiled" / EATS.name).glob("v1-*-quick.o"))


def test_each_served_version_gets_its_estimator_and_a_failed_read_costs_only_that() -> None:
    from dataclasses import replace

    from stream_app.models.loss_estimation import fit_loss_models

    watcher, registry, service, _ = harness()
    rng = np.random.default_rng(2)
    x = rng.normal(size=(600, len(EATS.feature_names)))
    fitted = fit_loss_models(x, x[:, 0], x[:, 0] + rng.normal(0, 1, 600))
    assert fitted is not None
    model, text = registry.versions["v2"]
    registry.add(replace(model, estimation={"method": "dle"}), text, loss_models=fitted.texts)
    registry.assigned["challenger"] = RoleAssignment("challenger", "v2", 0.5, 0, "A/B")
    registry.losses["v1"] = {}
    watcher.load()
    estimators = watcher.monitor.estimators
    assert set(estimators) == {"v2"}  # v1 has no loss models: a regression cannot estimate
    assert estimators["v2"].method == "dle"
    service_rows = asyncio.run(service.process([event(i, courier=f"c{i}") for i in range(40)]))
    assert service_rows.predictions == 40
    report = {e["model_version"]: e for e in watcher.monitor.estimate_report()}
    assert set(report) == {"v2"}
    assert 0 < report["v2"]["predictions"] < 40  # its half of the couriers, estimated

    def broken(version: str) -> dict[str, str]:
        raise TimeoutError("registry away")

    registry.loss_models = broken  # type: ignore[method-assign]
    registry.add(replace(registry.versions["v3"][0], estimation={"method": "dle"}),
                 registry.versions["v3"][1])  # fmt: skip
    registry.assigned["shadow"] = RoleAssignment("shadow", "v3", None, 0, "try")
    watcher.load()  # serves v3 all the same, without an estimate
    assert service.models.roles()["shadow"] == "v3"
    assert "v3" not in watcher.monitor.estimators
