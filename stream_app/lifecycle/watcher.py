"""Hot swap: every scoring worker follows the model roles without a restart.

The watcher reads the compacted ``model-updates`` topic from its start (its own consumer
group per process, nothing committed: every worker sees every announcement). An announcement
for this use case makes it read the roles from the registry (the source of truth; the topic
says *that* something changed), load any new version in a background thread, and hand the
scoring service a whole new ``ModelSet``. Batches already running finish with the set they
started with; the next batch uses the new one, so no event is dropped or scored twice.

The switch is measured from the announcement to the swap and recorded on
``stream_app_model_switch_seconds``, in the worker's log and on its dashboard.

A version is served by LightGBM as soon as it is loaded, and compiled to native code
(``models.compiled``) meanwhile, in a child process (``models.compile_process``: lleaves holds
the GIL for seconds to tens of seconds; nothing waits for it, the disk cache makes it once per
version and machine). When the compiled scorer
passed its check against LightGBM it replaces LightGBM's at the next batch boundary, in the
same way as a model swap but with the same versions and roles: the predictions are the same
(to about 1e-13), only quicker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, TypeVar

import orjson
from confluent_kafka import Consumer

from stream_app.models.calibration import uncalibrated
from stream_app.models.compiled import Compilation, CompileFailed
from stream_app.models.registry import (
    ModelVersion,
    RegistryReader,
    RoleAssignment,
    challenger_slots,
    compile_in_child,
    estimator_of,
    load_scorer,
)
from stream_app.models.scorer import LightGBMScorer, Scorer
from stream_app.monitoring.estimates import Estimator
from stream_app.monitoring.prometheus import WorkerMetrics
from stream_app.monitoring.state import Monitor
from stream_app.scoring.model_set import Arm, ModelSet, ScoringModel
from stream_app.scoring.service import ScoringService
from stream_app.settings import Settings
from stream_app.supervision import supervise

log = logging.getLogger(__name__)
POLL_S = 0.5
LOADED_VERSIONS_KEPT = 6
T = TypeVar("T")


def in_daemon_thread(function: Callable[[], T], name: str) -> asyncio.Future[T]:
    """``function`` run on a daemon thread of its own, as a future of the running loop: a
    worker that stops never waits for it (a compile can take tens of seconds)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result, error = function(), None
        except BaseException as exc:  # handed to the awaiting task
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


def role_state(roles: dict[str, RoleAssignment]) -> dict[str, tuple[str, float]]:
    """What a model set is built from: version and traffic share per role."""
    return {r: (a.version, a.traffic_fraction or 0.0) for r, a in roles.items()}


class ModelWatcher:
    """Keeps one scoring service's models equal to the registry's roles."""

    def __init__(
        self,
        settings: Settings,
        registry: RegistryReader,
        service: ScoringService,
        monitor: Monitor,
        metrics: WorkerMetrics,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.service = service
        self.monitor = monitor
        self.metrics = metrics
        self.use_case = registry.use_case
        self.state: dict[str, tuple[str, float]] = {}
        self._scorers: dict[str, tuple[Scorer, ModelVersion]] = {}
        self._estimators: dict[str, Estimator | None] = {}
        # without inlining (about 5x less compile CPU than optimised, the code 10-20 % slower),
        # unless the cache holds the optimised object
        self._compilation = Compilation.from_settings(settings, quick=True)
        self._roles: dict[str, RoleAssignment] = {}
        self._compiling: set[str] = set()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-watcher")
        self._compile_gate = asyncio.Lock()
        self._compile_tasks: set[asyncio.Task[None]] = set()
        self._consumer: Any = None
        self._runner: asyncio.Task[None] | None = None
        self._stopping = False
        self._lock = asyncio.Lock()

    # -- building model sets (blocking: run on the watcher's thread) ------------------------

    def _scorer(self, version: str) -> tuple[Scorer, ModelVersion]:
        if version not in self._scorers:
            started = time.perf_counter()
            model = self.registry.get(version)
            scorer = load_scorer(self.registry, version, Compilation.off())  # compiled later
            self.metrics.model_load_seconds.observe(time.perf_counter() - started)
            self.metrics.scorers_loaded.labels("lightgbm").inc()
            self._scorers[version] = (scorer, model)
            self._estimators[version] = self._estimator(model)
        return self._scorers[version]

    def _estimator(self, model: ModelVersion) -> Estimator | None:
        """How ``model`` estimates its performance before the labels (``None``: it cannot; a
        failed read of its loss models is logged and only costs the estimate)."""
        try:
            return estimator_of(self.registry, model, self.service.use_case.label.threshold)
        except Exception as exc:
            log.warning("model %s: its loss models could not be read (%r); no estimate of "
                        "its performance before the labels", model.version, exc)  # fmt: skip
            return None

    def build(self, roles: dict[str, RoleAssignment]) -> ModelSet:
        """Load every version the roles name (cached) and wrap them for scoring."""
        if "champion" not in roles:
            self.registry.champion()  # raises ModelNotFound saying what to do
        models: dict[str, ScoringModel] = {}
        for role, assignment in roles.items():
            scorer, _ = self._scorer(assignment.version)
            models[role] = self.service.model_for(scorer, role)
        arms = tuple(
            Arm(models[slot], roles[slot].traffic_fraction or 0.0)
            for slot in challenger_slots(roles)
        )
        return ModelSet(champion=models["champion"], challengers=arms, shadow=models.get("shadow"))

    def load(self) -> ModelSet:
        """The registry's current roles as a model set, served at once (worker start-up)."""
        roles = self.registry.roles()
        models = self.build(roles)
        self._apply(models, roles)
        return models

    def _apply(self, models: ModelSet, roles: dict[str, RoleAssignment]) -> ModelSet | None:
        previous = self.service.swap(models)
        self.state = role_state(roles)
        self._roles = dict(roles)
        for role in set(self.monitor.roles) - set(roles):
            self.monitor.clear_role(role)
        for role, assignment in roles.items():
            scorer, model = self._scorer(assignment.version)
            self.monitor.set_model(role, model.version, scorer.feature_names, model.distributions,
                                   self._estimators.get(model.version))  # fmt: skip
        self.monitor.traffic = models.traffic() if models.challengers else {}
        held = set(models.roles().values())
        for version in [v for v in self._scorers if v not in held][:-LOADED_VERSIONS_KEPT]:
            del self._scorers[version]  # keep a few recent ones for a quick rollback
            self._estimators.pop(version, None)
        self.monitor.keep_estimators(held)
        self._compile_served()
        return previous

    # -- compiling the served versions (``models.compiled``) --------------------------------

    def _compile_served(self) -> None:
        """Compile, one at a time on the compiler's thread, every served version still scored
        by LightGBM (nothing to do before the event loop runs: ``start`` calls it again)."""
        if not self._compilation.enabled:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        for version in sorted({assignment.version for assignment in self._roles.values()}):
            scorer, _ = self._scorers.get(version, (None, None))
            if (
                scorer is not None
                and isinstance(uncalibrated(scorer), LightGBMScorer)
                and version not in self._compiling
            ):
                self._compiling.add(version)
                task = asyncio.ensure_future(self._compile(version))
                self._compile_tasks.add(task)  # held until done (the loop keeps weak refs)
                task.add_done_callback(self._compile_tasks.discard)

    async def _compile(self, version: str) -> None:
        loop = asyncio.get_running_loop()
        fallbacks = self.metrics.scorer_fallbacks
        try:

            def compile_it() -> Scorer | None:
                try:  # in a child process: lleaves holds the GIL for seconds
                    compile_in_child(self.registry, version, self._compilation)
                except CompileFailed as e:
                    log.warning("model %s scored by LightGBM, not compiled (%s): %s",
                                version, e.reason, e)  # fmt: skip
                    fallbacks.labels(e.reason).inc()
                    return None
                cached = replace(self._compilation, cached_only=True)
                return load_scorer(self.registry, version, cached,
                                   on_fallback=lambda r: fallbacks.labels(r).inc())  # fmt: skip

            async with self._compile_gate:  # one compile at a time
                scorer = await in_daemon_thread(compile_it, f"compile-{version}")
        except Exception as exc:  # a registry outage, say: LightGBM goes on scoring it
            log.warning("compiling model %s failed (%r); LightGBM goes on scoring it",
                        version, exc)  # fmt: skip
            self._compiling.discard(version)
            return
        if scorer is None or isinstance(uncalibrated(scorer), LightGBMScorer):
            return  # fell back (logged, counted)
        async with self._lock:
            if version not in self._scorers or self._stopping:
                return
            self._scorers[version] = (scorer, self._scorers[version][1])
            self.metrics.scorers_loaded.labels("compiled").inc()
            if version in {assignment.version for assignment in self._roles.values()}:
                try:
                    models = await loop.run_in_executor(self._thread, self.build, self._roles)
                except Exception as exc:  # the next refresh builds with it
                    log.warning("serving model %s compiled waits for the next model change "
                                "(%r)", version, exc)  # fmt: skip
                    return
                self.service.swap(models)
        log.info("model %s now scored by its compiled code", version)

    # -- following model-updates ----------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._consumer = Consumer(
            self.settings.kafka.client_config(
                {
                    "group.id": f"{self.settings.worker.app_id}-models-{uuid.uuid4().hex[:12]}",
                    "auto.offset.reset": "earliest",
                    "enable.auto.commit": False,
                    "fetch.wait.max.ms": 50,  # an idle topic: answer fetches soon
                    "log_level": 4,
                }
            )
        )
        topic = self.settings.kafka.topics.model_updates
        await loop.run_in_executor(self._thread, lambda: self._consumer.subscribe([topic]))
        self._compile_served()  # the versions `load` served before the loop ran
        self._runner = asyncio.ensure_future(self._run())
        supervise(self._runner, "following model-updates", lambda: self._stopping)

    async def stop(self) -> None:
        self._stopping = True
        if self._runner is not None:
            await asyncio.wait({self._runner}, timeout=10)
        if self._consumer is not None:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._consumer.close)
        self._thread.shutdown(wait=True)

    def _poll(self) -> list[dict[str, Any]]:
        prefix = f"{self.use_case}:".encode()
        announcements = []
        # the first record ends the wait at once; the rest of what arrived comes without one
        messages = self._consumer.consume(1, POLL_S)
        if messages:
            messages += self._consumer.consume(100, 0)
        for message in messages:
            if message.error() is not None or not (message.key() or b"").startswith(prefix):
                continue
            try:
                announcements.append(orjson.loads(message.value()))
            except orjson.JSONDecodeError:
                log.warning("unreadable model-updates record at offset %s", message.offset())
        return announcements

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            try:
                announcements = await loop.run_in_executor(self._thread, self._poll)
                if announcements:
                    announced = max(int(a.get("announced_at", 0)) for a in announcements)
                    await self.refresh(announced)
            except Exception:  # a registry outage: keep serving the current set, try again
                log.exception("following model-updates failed; serving the current models")
                await asyncio.sleep(2.0)

    async def refresh(self, announced_at_ms: int | None = None) -> bool:
        """Re-read the roles; swap when they changed. Returns whether it swapped."""
        loop = asyncio.get_running_loop()
        async with self._lock:
            roles = await loop.run_in_executor(self._thread, self.registry.roles)
            if role_state(roles) == self.state:
                return False
            before = dict(self.state)
            started = time.perf_counter()
            models = await loop.run_in_executor(self._thread, self.build, roles)
            load_s = time.perf_counter() - started
            self._apply(models, roles)
        now = time.time()
        switch_s = now - announced_at_ms / 1000 if announced_at_ms else load_s
        roles_seen = set(before) | set(self.state)
        changed = sorted(r for r in roles_seen if before.get(r) != self.state.get(r))
        for role in changed:
            self.metrics.model_switch_seconds.labels(role).observe(max(switch_s, 0.0))
        record = {
            "at": int(now * 1000),
            "roles_before": {r: v for r, (v, _) in before.items()},
            "roles_after": models.roles(),
            "traffic": models.traffic(),
            "changed": changed,
            "switch_s": round(switch_s, 3),
            "load_s": round(load_s, 3),
        }
        self.monitor.switched(record)
        log.info("serving models %s (switch %.3f s after the announcement, loading %.3f s)",
                 models.roles(), switch_s, load_s)  # fmt: skip
        return True
