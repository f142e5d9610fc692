"""The orchestrator: monitor -> retrain -> evaluate -> promote, inside the worker.

Every ``lifecycle.check_interval_s`` the leader worker (one per deployment: Faust's leader
partition decides) looks at the champion:

- degradation: its rolling primary metric over the whole deployment (``AccuracyFeed``), with
  at least ``min_labels`` labels, worse than its validation figure by ``degradation_factor``;
- no skill: its live skill (against a constant on the same labels) at most ``min_skill``, when
  it had skill on its validation rows or most of its monitored features drift
  (``retrain_on_no_skill``);
- estimated degradation: its primary metric estimated without labels (``monitoring.estimates``,
  this worker's partitions) worse than its validation figure by ``degradation_factor``
  (``act_on_estimates``, off by default; the decision records that it acted before the labels);
- drift: a drift alarm on the champion's served features or predictions (``retrain_on_drift``);
- schedule: the champion is older than ``schedule_s``.

A degradation, a lack of skill or drift must last ``degradation_for_s`` (a blip does not
retrain). Then, at
most once per ``retrain_cooldown_s``, it trains a challenger on served data of the last
``retrain_window_s`` (leaving out the newest events, whose labels are immature, and after a
degradation starting at the change point of the champion's error: ``retrain_window``) in a
separate process (`stream-app train`: the agents are never blocked), evaluates it in another
(`stream-app evaluate --json`), and promotes it when the policy approves and ``auto_promote``
is on; otherwise it stays challenger. Every step is a decision event on ``model-decisions``
with its reasons.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from stream_app.contracts.outputs import ModelDecision
from stream_app.lifecycle.accuracy_feed import AccuracyFeed
from stream_app.lifecycle.retrain_window import RetrainWindow, retrain_window
from stream_app.models.evaluation import primary_metric
from stream_app.models.metrics import HIGHER_IS_BETTER, skill_of
from stream_app.models.registry import ModelRegistry, ModelVersion
from stream_app.models.roles import (
    Roles,
    actor,
    decision,
    new_decision_id,
    publish_decision,
)
from stream_app.monitoring.prometheus import WorkerMetrics
from stream_app.monitoring.state import Monitor
from stream_app.settings import LifecycleSettings, Settings
from stream_app.use_cases.spec import UseCase

log = logging.getLogger(__name__)
EVALUATE_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Trigger:
    """Why retraining should start."""

    kind: str  # degradation, drift or schedule
    reasons: list[str]
    details: dict[str, Any] = field(default_factory=dict)


def is_degraded(metric: str, rolling: float, reference: float, factor: float) -> bool:
    """Worse than ``reference`` by ``factor``: the metric itself when lower is better, the
    error rate (1 - value) when higher is better."""
    if HIGHER_IS_BETTER[metric]:
        return (1 - rolling) > (1 - reference) * factor
    return rolling > reference * factor


@dataclass
class Watch:
    """What the orchestrator remembers between checks about one champion."""

    champion: str
    troubled_since_ms: int | None = None


@dataclass(frozen=True)
class Evidence:
    """What a check sees of the champion besides its realised rolling metrics: its skill on
    the validation rows, the features it monitors for drift, and its performance estimated
    without labels (``monitoring.estimates``; ``None`` when it has none)."""

    validation_skill: float | None = None
    monitored_features: int = 0
    estimated: dict[str, float] | None = None
    estimate_method: str | None = None


def assess(
    *,
    watch: Watch,
    metric: str,
    reference: float | None,
    rolling: dict[str, float] | None,
    drift_alarms: list[dict[str, Any]],
    champion_created_ms: int,
    now_ms: int,
    settings: LifecycleSettings,
    evidence: Evidence | None = None,
) -> Trigger | None:
    """The trigger to retrain on now, if any (updates ``watch.troubled_since_ms``)."""
    evidence = evidence or Evidence()
    reasons: list[str] = []
    details: dict[str, Any] = {}
    kind = ""
    labels = int(rolling["labels"]) if rolling else 0
    value = rolling.get(metric, math.nan) if rolling else math.nan
    if (
        reference is not None
        and labels >= settings.min_labels
        and math.isfinite(value)
        and is_degraded(metric, value, reference, settings.degradation_factor)
    ):
        kind = "degradation"
        reasons.append(
            f"rolling {metric} {value:.4g} over {labels} labels is worse than "
            f"{settings.degradation_factor:g} x the validation {metric} {reference:.4g}"
        )
        details.update(metric=metric, rolling=value, labels=labels, reference=reference,
                       factor=settings.degradation_factor)  # fmt: skip
    no_skill = _no_skill(rolling, labels, drift_alarms, evidence, settings)
    if no_skill:
        kind = kind or "no_skill"
        reasons += no_skill
        details["skill"] = rolling.get("skill") if rolling else None
        details["validation_skill"] = evidence.validation_skill
    estimated = _estimated_degradation(metric, reference, evidence, settings)
    if estimated:
        kind = kind or "estimated_degradation"
        reasons.append(estimated)
        details.update(before_labels=kind == "estimated_degradation",
                       estimated={metric: (evidence.estimated or {}).get(metric)},
                       estimate_method=evidence.estimate_method)  # fmt: skip
    if drift_alarms and settings.retrain_on_drift:
        kind = kind or "drift"
        names = ", ".join(
            f"{a['feature']} (psi {a['psi']:.3g}, ks {a['ks']:.3g})" for a in drift_alarms
        )
        reasons.append(f"drift alarms on {names}")
        details["drift"] = [
            {k: a[k] for k in ("feature", "psi", "ks", "values")} for a in drift_alarms
        ]
    if kind:
        if watch.troubled_since_ms is None:
            watch.troubled_since_ms = now_ms
        lasted_s = (now_ms - watch.troubled_since_ms) / 1000
        if lasted_s >= settings.degradation_for_s:
            reasons.append(f"for {lasted_s:.0f} s (>= {settings.degradation_for_s:g} s)")
            details["lasted_s"] = lasted_s
            return Trigger(kind, reasons, details)
        return None
    watch.troubled_since_ms = None
    age_s = (now_ms - champion_created_ms) / 1000
    if settings.schedule_s is not None and age_s >= settings.schedule_s:
        return Trigger(
            "schedule",
            [f"the champion is {age_s:.0f} s old (schedule: every {settings.schedule_s:g} s)"],
            {"age_s": age_s},
        )
    return None


def _drifting_share(drift_alarms: list[dict[str, Any]], monitored: int) -> float:
    features = {a["feature"] for a in drift_alarms if a["feature"] != "prediction"}
    return len(features) / monitored if monitored else 0.0


def _no_skill(
    rolling: dict[str, float] | None, labels: int, drift_alarms: list[dict[str, Any]],
    evidence: Evidence, settings: LifecycleSettings,
) -> list[str]:  # fmt: skip
    """Reasons to retrain a champion no better than a constant on its live labels: when it
    had skill on its validation rows (it lost it), or when most of its features drift (the
    world it was trained on is gone). A live metric better than the validation one says
    nothing when the base rate moved; skill compares with a constant on the same labels."""
    skill = rolling.get("skill", math.nan) if rolling else math.nan
    if not settings.retrain_on_no_skill or labels < settings.min_labels:
        return []
    if not math.isfinite(skill) or skill > settings.min_skill:
        return []
    had_skill = evidence.validation_skill is not None and (
        evidence.validation_skill > settings.min_skill
    )
    share = _drifting_share(drift_alarms, evidence.monitored_features)
    if not had_skill and share < settings.no_skill_drift_share:
        return []
    reasons = [
        f"live skill {skill:.3g} over {labels} labels: no better than a constant on the same "
        f"labels (at most {settings.min_skill:g})"
    ]
    if had_skill:
        reasons.append(f"it had skill {evidence.validation_skill:.3g} on its validation rows")
    if share >= settings.no_skill_drift_share:
        reasons.append(f"{share:.0%} of its {evidence.monitored_features} monitored features "
                       "drift")  # fmt: skip
    return reasons


def _estimated_degradation(
    metric: str, reference: float | None, evidence: Evidence, settings: LifecycleSettings
) -> str | None:
    """A reason to retrain before the labels: the estimated primary metric (its own
    predictions, no labels: CBPE or DLE) worse than the validation one by the factor."""
    estimated = evidence.estimated
    if not settings.act_on_estimates or reference is None or estimated is None:
        return None
    value = estimated.get(metric, math.nan)
    predictions = int(estimated.get("predictions", 0))
    if predictions < settings.min_labels or not math.isfinite(value):
        return None
    if not is_degraded(metric, value, reference, settings.degradation_factor):
        return None
    return (
        f"estimated {metric} {value:.4g} ({evidence.estimate_method}, over {predictions} "
        f"predictions, before their labels) is worse than {settings.degradation_factor:g} x "
        f"the validation {metric} {reference:.4g}"
    )


async def run_stream_app(args: list[str], timeout_s: float) -> tuple[int, str, str]:
    """Run `stream-app ARGS` in a separate process (same settings: environment and folder)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stream_app.main", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        return -9, "", f"stream-app {args[0]} took longer than {timeout_s:g} s and was stopped"
    except asyncio.CancelledError:  # the worker is stopping: do not leave the process behind
        process.kill()
        raise
    return process.returncode or 0, out.decode(), err.decode()


def _tail(text: str, lines: int = 3) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:] if line.strip())


class Orchestrator:
    """Runs on the leader worker; ``check`` is called by a timer."""

    def __init__(
        self,
        settings: Settings,
        use_case: UseCase,
        registry: ModelRegistry,
        monitor: Monitor,
        metrics: WorkerMetrics,
        feed: AccuracyFeed,
    ) -> None:
        self.settings = settings
        self.policy = settings.lifecycle
        self.use_case = use_case
        self.registry = registry
        self.monitor = monitor
        self.metrics = metrics
        self.feed = feed
        self.lifecycle = Roles(registry, settings.kafka, actor("orchestrator"))
        self.metric = primary_metric(use_case, settings.lifecycle)
        self.watch: Watch | None = None
        self.retraining: asyncio.Task[None] | None = None
        self.last_retrain_ms: int | None = None
        self._models: dict[str, ModelVersion] = {}

    async def _call(self, function: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, function, *args)

    def _model(self, version: str) -> ModelVersion:
        if version not in self._models:
            self._models[version] = self.registry.get(version)
        return self._models[version]

    async def stand_down(self) -> None:
        """This worker is not the leader (any more), or it stops: stop following
        accuracy-events and stop a retraining in progress."""
        if self.retraining is not None and not self.retraining.done():
            self.retraining.cancel()
            await asyncio.wait({self.retraining}, timeout=10)
        if self.feed.running:
            await self.feed.stop()
        self.watch = None

    async def check(self) -> Trigger | None:
        """One look at the champion; starts a retraining when a trigger fires."""
        if not self.feed.running:
            await self.feed.start()  # one window back: judged on full data from now on
            return None
        if self.retraining is not None and not self.retraining.done():
            return None
        champion = (await self._call(self.registry.champion)).version
        model: ModelVersion = await self._call(self._model, champion)
        if self.watch is None or self.watch.champion != champion:
            self.watch = Watch(champion)
        validation = model.metrics.get("validation", {})
        reference = validation.get(self.metric)
        now = int(time.time() * 1000)
        alarms = [
            a for a in self.monitor.alarms(self.monitor.drift_report(now))
            if a["model_version"] == champion
        ]  # fmt: skip
        key = (champion, "champion")
        estimated = self.monitor.estimates.snapshot(now).get(key)
        trigger = assess(
            watch=self.watch,
            metric=self.metric,
            reference=reference,
            rolling=self.feed.snapshot(now).get(key),
            drift_alarms=alarms,
            champion_created_ms=model.created_at,
            now_ms=now,
            settings=self.policy,
            evidence=Evidence(
                validation_skill=skill_of(model.task, model.metrics),
                monitored_features=len(self.monitor.monitored),
                estimated=estimated,
                estimate_method=self.monitor.estimates.methods.get(key),
            ),
        )
        if trigger is None or not self.policy.auto_retrain:
            return trigger
        if self.last_retrain_ms is None:  # after a restart or a new leader: from the registry
            versions = await self._call(self.registry.versions)
            self.last_retrain_ms = max(
                (v.created_at for v in versions
                 if v.training_window.get("trigger", "manual") != "manual"),
                default=0,
            )  # fmt: skip
        if now - self.last_retrain_ms < self.policy.retrain_cooldown_s * 1000:
            return trigger
        window = retrain_window(
            self.feed.timeline(champion, now), now, int(self.policy.retrain_window_s * 1000),
            from_change=self.policy.retrain_from_change and trigger.kind == "degradation",
            maturity_quantile=self.policy.label_maturity_quantile,
            regime_since_ms=model.training_window.get("regime_since"),
        )  # fmt: skip
        if window.change_ms is not None and window.labels < self.settings.training.min_rows:
            log.info("lifecycle: %s; waiting for %d mature labels since the change point "
                     "(%d so far)", trigger.kind, self.settings.training.min_rows,
                     window.labels)  # fmt: skip
            return trigger
        self.last_retrain_ms = now
        self.retraining = asyncio.ensure_future(self.retrain(trigger, champion, window))
        return trigger

    async def _decide(self, record: ModelDecision) -> None:
        await self._call(publish_decision, self.settings.kafka, record)
        self._record(record)

    def _record(self, record: ModelDecision) -> None:
        self.monitor.decided(record)
        self.metrics.lifecycle_decisions.labels(record["action"]).inc()
        log.info("lifecycle: %s %s: %s", record["action"], record["model_version"] or "",
                 "; ".join(record["reasons"]))  # fmt: skip

    async def retrain(self, trigger: Trigger, champion: str, window: RetrainWindow) -> None:
        """Train on ``window``, evaluate and (policy permitting) promote; every step is
        published."""
        decision_id = new_decision_id()
        name = self.use_case.name
        by = self.lifecycle.decided_by
        since, until = window.since_ms, window.until_ms
        details = {"trigger": trigger.kind, **trigger.details, "since": since, "until": until,
                   "change_point": window.change_ms, "label_maturity_ms": window.maturity_ms,
                   "window_labels": window.labels}  # fmt: skip
        reasons = [*trigger.reasons, "training window: " + ", ".join(window.reasons)]
        await self._decide(decision(name, "retrain_started", None, champion, reasons,
                                    by, details, f"{decision_id}-1"))  # fmt: skip
        arguments = ["train", "--use-case", self.settings.use_case, "--since", str(since),
                     "--until", str(until), "--trigger", trigger.kind]  # fmt: skip
        if window.regime_since_ms is not None:
            arguments += ["--regime-since", str(window.regime_since_ms)]
        code, out, err = await run_stream_app(arguments, self.policy.retrain_timeout_s)
        if code != 0:
            await self._decide(decision(name, "retrain_failed", None, champion,
                                        [f"training failed (exit {code}): {_tail(err)}"], by,
                                        details, f"{decision_id}-2"))  # fmt: skip
            return
        version = orjson.loads(out.strip().splitlines()[-1])["version"]
        code, out, err = await run_stream_app(
            [
                "evaluate",
                version,
                "--use-case",
                self.settings.use_case,
                "--against",
                champion,
                "--json",
            ],
            EVALUATE_TIMEOUT_S,
        )
        if code != 0:
            await self._decide(decision(name, "retrain_failed", version, champion,
                                        [f"evaluation failed (exit {code}): {_tail(err)}"], by,
                                        details, f"{decision_id}-2"))  # fmt: skip
            return
        evaluation = orjson.loads(out.strip().splitlines()[-1])
        verdict = evaluation["decision"]
        figures = {
            "trigger": trigger.kind, "metric": evaluation["metric"],
            "holdout_rows": evaluation["holdout_rows"], "metrics": evaluation["metrics"],
            "latency": evaluation["latency"], "p_value": verdict["p_value"],
            "improvement": verdict["improvement"],
        }  # fmt: skip
        if verdict["promote"] and self.policy.auto_promote:
            record = decision(name, "promoted", version, champion, verdict["reasons"], by,
                              figures, f"{decision_id}-2")  # fmt: skip
            await self._call(
                lambda: self.lifecycle.promote(
                    version, f"orchestrator: {trigger.kind}", decision_id=record["decision_id"],
                    details=figures, reasons=verdict["reasons"],
                )
            )  # fmt: skip
            self._record(record)
            return
        action = "kept_challenger" if verdict["promote"] else "rejected"
        reasons = list(verdict["reasons"])
        if verdict["promote"]:
            reasons.append("auto_promote is off: it stays challenger for `stream-app promote`")
        await self._decide(decision(name, action, version, champion, reasons, by, figures,
                                    f"{decision_id}-2"))  # fmt: skip
