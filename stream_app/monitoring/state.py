"""What a worker knows about its own health, for `/metrics`, `/dashboard` and `status`.

One ``Monitor`` per worker, fed by its services: predictions (rolling counts, drift, latency),
accuracy events (rolling metrics per model version), dead letters, consumer lag, throughput,
and the model roles. ``MonitorCollector`` exposes it to Prometheus at scrape time.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import orjson
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from stream_app.contracts.dead_letter import DeadLetter
from stream_app.contracts.outputs import performance_estimate_key, performance_estimate_payload
from stream_app.kafka.producer import Publisher, PublishError
from stream_app.messages import Record
from stream_app.monitoring.drift import ModelDrift
from stream_app.monitoring.estimates import EstimateLedger, Estimator, RollingEstimates
from stream_app.monitoring.rolling import RollingAccuracy
from stream_app.monitoring.stages import STAGES, percentiles
from stream_app.settings import MonitoringSettings
from stream_app.timeparse import parse_duration_ms
from stream_app.use_cases.spec import UseCase

log = logging.getLogger(__name__)
RECENT_DEAD_LETTERS = 20
RECENT_SWITCHES = 20
RECENT_DECISIONS = 20
LATENCY_SAMPLES = 5_000
THROUGHPUT_SECONDS = 120


def _now() -> int:
    return int(time.time() * 1000)


class Monitor:
    """The live state of one worker's models and streams."""

    def __init__(self, use_case: UseCase, settings: MonitoringSettings) -> None:
        self.use_case = use_case
        self.settings = settings
        label = use_case.label
        window_ms = int(settings.accuracy_window_s * 1000)
        self.rolling = RollingAccuracy(use_case.task, label.tolerance, label.threshold, window_ms)
        self.estimates = RollingEstimates(window_ms)
        self.ledger = EstimateLedger(
            use_case.task, label.tolerance, label.threshold, window_ms,
            settle_ms=parse_duration_ms(label.max_delay),
            settle_coverage=settings.estimate_settle_coverage,
            min_labels=settings.estimate_min_labels,
        )  # fmt: skip
        self.estimators: dict[str, Estimator] = {}  # version -> how it estimates itself
        self.monitored = {n for n, f in use_case.features.items() if f.monitor_drift}
        self.feature_entities = {
            n: f.entity for n, f in use_case.features.items() if hasattr(f, "entity")
        }
        self.drift: dict[str, ModelDrift] = {}
        self.roles: dict[str, str] = {}
        self.traffic: dict[str, float] = {}  # role -> share of live traffic (A/B challenger)
        self.switches: deque[dict[str, Any]] = deque(maxlen=RECENT_SWITCHES)
        self.decisions: deque[dict[str, Any]] = deque(maxlen=RECENT_DECISIONS)
        self.latencies: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self.stages: dict[str, deque[float]] = {
            stage: deque(maxlen=LATENCY_SAMPLES) for stage in STAGES
        }
        self.dead_letters: deque[dict[str, Any]] = deque(maxlen=RECENT_DEAD_LETTERS)
        self.lags: dict[tuple[str, str], int] = {}
        self.labels_matched = 0
        self.labels_unmatched = 0
        self._throughput: dict[str, deque[list[int]]] = {}

    # -- fed by the services ----------------------------------------------------------------

    def set_model(
        self,
        role: str,
        version: str,
        feature_names: list[str],
        distributions: dict[str, Any],
        estimator: Estimator | None = None,
    ) -> None:
        """A model now holds ``role``; its training distributions are the drift reference,
        and ``estimator`` estimates its performance before the labels."""
        self.roles[role] = version
        if estimator is not None:
            self.estimators[version] = estimator
        if version not in self.drift:
            self.drift[version] = ModelDrift(
                feature_names,
                distributions,
                self.monitored,
                int(self.settings.drift_window_s * 1000),
                self.settings.drift_min_entities,
                self.feature_entities,
            )

    def keep_estimators(self, versions: set[str]) -> None:
        """Estimate only the versions served now (their earlier estimates stay reported)."""
        self.estimators = {v: e for v, e in self.estimators.items() if v in versions}

    def clear_role(self, role: str) -> None:
        """No model holds ``role`` any more."""
        self.roles.pop(role, None)
        self.traffic.pop(role, None)

    def switched(self, record: dict[str, Any]) -> None:
        """A model swap this worker made (roles before and after, and how long it took)."""
        self.switches.append(record)

    def decided(self, decision: Mapping[str, Any]) -> None:
        """A lifecycle decision this worker's orchestrator made."""
        self.decisions.append(dict(decision))

    def count(self, topic: str, n: int, at_ms: int | None = None) -> None:
        second = (at_ms or _now()) // 1000
        seconds = self._throughput.setdefault(topic, deque(maxlen=THROUGHPUT_SECONDS))
        if seconds and seconds[-1][0] == second:
            seconds[-1][1] += n
        else:
            seconds.append([second, n])

    def scored(
        self,
        version: str,
        role: str,
        matrix: np.ndarray[Any, Any],
        predictions: np.ndarray[Any, Any],
        latencies_ms: list[float],
        at_ms: int,
        event_times_ms: np.ndarray[Any, Any] | None = None,
        entity_ids: dict[str, list[str]] | None = None,
    ) -> None:
        self.rolling.record_predictions(version, role, len(predictions), at_ms)
        estimator = self.estimators.get(version)
        if estimator is not None and len(predictions):
            terms = estimator.terms(matrix, predictions)
            probabilities = predictions if estimator.method == "cbpe" else None
            self.estimates.add(version, role, estimator.method, terms, probabilities, at_ms)
            times = (
                event_times_ms
                if event_times_ms is not None
                else np.full(len(predictions), at_ms, dtype=np.int64)
            )
            self.ledger.add_estimates(version, role, estimator.method, times, terms,
                                      probabilities)  # fmt: skip
        drift = self.drift.get(version)
        if drift is not None and drift.has_reference:
            drift.observe(matrix, predictions, at_ms, event_times_ms, entity_ids)
        self.latencies.extend(latencies_ms)

    def stage(self, stage: str, values_ms: Iterable[float]) -> None:
        """Time spent in one stage of the scoring path (``monitoring.stages``)."""
        self.stages[stage].extend(values_ms)

    def labelled(
        self,
        version: str,
        role: str,
        predicted: float,
        actual: float,
        at_ms: int,
        event_ms: int | None = None,
    ) -> None:
        """An accuracy event (``event_ms``: its prediction's event time, which places it
        beside that window's estimate)."""
        self.rolling.add(version, role, predicted, actual, at_ms)
        if event_ms is not None:
            self.ledger.add_label(version, role, event_ms, predicted, actual)

    def dead_letter(self, record: DeadLetter) -> None:
        self.dead_letters.append(
            {
                k: record[k]
                for k in (
                    "source_topic",
                    "partition",
                    "offset",
                    "error_code",
                    "error_message",
                    "failed_at",
                )
            }
        )

    # -- read by /metrics, /dashboard and status ------------------------------------------

    def throughput(self, now_ms: int | None = None, seconds: int = 10) -> dict[str, float]:
        """Messages per second per topic over the last complete ``seconds``."""
        current = (now_ms or _now()) // 1000
        rates = {}
        for topic, counts in self._throughput.items():
            total = sum(n for second, n in counts if current - seconds <= second < current)
            rates[topic] = total / seconds
        return rates

    def latency_percentiles(self) -> dict[str, float]:
        if not self.latencies:
            return {}
        values = np.fromiter(self.latencies, dtype=float)
        return {f"p{q}": float(np.percentile(values, q)) for q in (50, 95, 99)}

    def drift_report(self, now_ms: int | None = None) -> dict[str, dict[str, dict[str, float]]]:
        now = now_ms or _now()
        return {
            version: drift.report(now)
            for version, drift in self.drift.items()
            if drift.has_reference and version in self.roles.values()
        }

    def alarms(self, report: dict[str, dict[str, dict[str, float]]]) -> list[dict[str, Any]]:
        """Features (and predictions) past a drift threshold, with enough values to judge."""
        found = []
        for version, features in report.items():
            for name, stats in features.items():
                if stats["values"] < self.settings.drift_min_values or not math.isfinite(
                    stats["psi"]
                ):
                    continue
                if (
                    stats["psi"] > self.settings.psi_threshold
                    or stats["ks"] > self.settings.ks_threshold
                ):
                    found.append({"model_version": version, "feature": name, **stats})
        return found

    def snapshot(self) -> dict[str, Any]:
        """Everything at once, JSON-ready (the dashboard's data and `status`)."""
        now = _now()
        drift = self.drift_report(now)
        realised = self.rolling.snapshot(now)
        accuracy = [
            {"model_version": version, "role": role, **_finite(values)}
            for (version, role), values in realised.items()
        ]
        return {
            "use_case": self.use_case.name,
            "task": self.use_case.task,
            "estimates": self.estimate_report(now, realised),
            "at": now,
            "roles": dict(self.roles),
            "traffic": dict(self.traffic),
            "switches": list(self.switches),
            "decisions": list(self.decisions),
            "throughput": self.throughput(now),
            "latency_ms": self.latency_percentiles(),
            "stages_ms": {
                stage: figures
                for stage, values in self.stages.items()
                if (figures := percentiles(values))
            },
            "accuracy": accuracy,
            "accuracy_window_s": self.settings.accuracy_window_s,
            "drift": {v: {f: _finite(s) for f, s in fs.items()} for v, fs in drift.items()},
            "drift_alarms": [_finite(a) for a in self.alarms(drift)],
            "thresholds": {"psi": self.settings.psi_threshold, "ks": self.settings.ks_threshold},
            "labels": {"matched": self.labels_matched, "unmatched": self.labels_unmatched},
            "consumer_lag": [
                {"topic": t, "group": g, "messages": n} for (t, g), n in sorted(self.lags.items())
            ],
            "dead_letters": list(self.dead_letters),
        }

    def estimate_report(
        self,
        now_ms: int | None = None,
        realised: dict[tuple[str, str], dict[str, float]] | None = None,
    ) -> list[dict[str, Any]]:
        """Per (version, role) estimated: its estimated metrics over the rolling window beside
        the realised ones (``realised``: the rolling snapshot of ``now_ms`` when the caller
        has taken it), and how far its estimates were off in the windows whose labels are in
        (settling those first)."""
        now = now_ms or _now()
        self.ledger.settle(now)
        if realised is None:
            realised = self.rolling.snapshot(now)
        errors = self.ledger.errors()
        report = []
        for key, estimated in self.estimates.snapshot(now).items():
            version, role = key
            method = self.estimates.methods[key]
            metrics = [m for m in estimated if m != "predictions"]
            live = realised.get(key, {})
            error = errors.get(key, {})
            report.append({
                "model_version": version, "role": role, "method": method,
                "calibrated": self.calibrated(version, method),
                "predictions": int(estimated["predictions"]),
                "labels": int(live.get("labels", 0)),
                "estimated": _finite({m: estimated[m] for m in metrics}),
                "realised": _finite({m: live[m] for m in metrics if m in live}),
                "skill": _finite({"skill": live.get("skill", math.nan)})["skill"],
                "windows_compared": error.get("windows", 0),
                "estimate_error": _finite(error.get("mean_abs_error", {})),
                "last_window": _finite_window(error.get("last")),
            })  # fmt: skip
        return report

    def calibrated(self, version: str, method: str) -> bool | None:
        """CBPE only: whether ``version`` serves calibrated probabilities (what the method
        assumes); None for DLE, or a version no longer estimated here."""
        estimator = self.estimators.get(version)
        return estimator.calibrated if estimator is not None and method == "cbpe" else None


def estimate_records(monitor: Monitor, topic: str, now_ms: int | None = None) -> list[Record]:
    """The performance-estimates records of now: each estimated version's rolling estimate
    (beside its realised figures), and each window settled since the last call."""
    now = now_ms or _now()
    name = monitor.use_case.name
    window_ms = int(monitor.settings.accuracy_window_s * 1000)
    payloads = []
    for entry in monitor.estimate_report(now):
        payloads.append(performance_estimate_payload(
            use_case=name, model_version=entry["model_version"], role=entry["role"],
            method=entry["method"], kind="rolling", window_start=now - window_ms,
            window_end=now, predictions=entry["predictions"], labels=entry["labels"],
            estimated=entry["estimated"], realised=entry["realised"],
            error=entry["estimate_error"], calibrated=entry["calibrated"],
            published_at=now,
        ))  # fmt: skip
    for compared in monitor.ledger.take_unpublished():
        payloads.append(performance_estimate_payload(
            use_case=name, model_version=compared["model_version"],
            role=compared["role"], method=compared["method"], kind="window",
            window_start=compared["window_start"], window_end=compared["window_end"],
            predictions=compared["predictions"], labels=compared["labels"],
            estimated=compared["estimated"], realised=compared["realised"],
            error=compared["error"],
            calibrated=monitor.calibrated(compared["model_version"], compared["method"]),
            published_at=now,
        ))  # fmt: skip
    return [
        Record(topic, performance_estimate_key(name, p["model_version"]), orjson.dumps(p))
        for p in payloads
    ]


class EstimatePublisher:
    """Publishes ``estimate_records`` on the performance-estimates topic (a worker's timer);
    records Kafka did not take are tried again with the next ones (at most ``KEPT``)."""

    KEPT = 1_000

    def __init__(self, monitor: Monitor, publisher: Publisher, topic: str) -> None:
        self.monitor = monitor
        self.publisher = publisher
        self.topic = topic
        self.pending: list[Record] = []

    async def publish(self, now_ms: int | None = None) -> int:
        records = [*self.pending, *estimate_records(self.monitor, self.topic, now_ms)]
        self.pending = []
        if not records:
            return 0
        try:
            await self.publisher.publish(records)
        except PublishError as exc:
            self.pending = exc.failed[-self.KEPT :]
            log.warning("%d performance estimates not published yet (%s); trying again",
                        len(exc.failed), exc)  # fmt: skip
            return len(records) - len(exc.failed)
        return len(records)


def _finite_window(compared: dict[str, Any] | None) -> dict[str, Any] | None:
    if compared is None:
        return None
    return {k: _finite(v) if isinstance(v, dict) else v for k, v in compared.items()}


def _finite(values: dict[str, Any]) -> dict[str, Any]:
    """NaN is not JSON: report missing figures as null."""
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in values.items()
    }


class MonitorCollector(Collector):
    """Rolling accuracy, coverage, drift, consumer lag and model roles, read at scrape time."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[GaugeMetricFamily]:
        m = self.monitor
        now = _now()
        accuracy = GaugeMetricFamily(
            "stream_app_model_metric",
            f"Rolling accuracy metric per model version over the last "
            f"{m.settings.accuracy_window_s:.0f} s of ground truth.",
            labels=["model_version", "role", "metric"],
        )
        coverage = GaugeMetricFamily(
            "stream_app_label_coverage_ratio",
            "Labels received over predictions made, same rolling window.",
            labels=["model_version", "role"],
        )
        realised = m.rolling.snapshot(now)
        for (version, role), values in realised.items():
            for name, value in values.items():
                if name in ("labels", "predictions", "label_coverage"):
                    continue
                if math.isfinite(value):
                    accuracy.add_metric([version, role, name], value)
            if math.isfinite(values["label_coverage"]):
                coverage.add_metric([version, role], values["label_coverage"])
        yield accuracy
        yield coverage
        yield from _estimate_gauges(m.estimate_report(now, realised))
        psi = GaugeMetricFamily(
            "stream_app_feature_drift_psi",
            "PSI of served values against the model's training data, sliding window.",
            labels=["model_version", "feature"],
        )
        ks = GaugeMetricFamily(
            "stream_app_feature_drift_ks",
            "Binned KS statistic of served values against the training data.",
            labels=["model_version", "feature"],
        )
        alarm = GaugeMetricFamily(
            "stream_app_drift_alarm",
            "1 where PSI or KS is past its threshold (settings.monitoring).",
            labels=["model_version", "feature"],
        )
        report = m.drift_report(now)
        alarmed = {(a["model_version"], a["feature"]) for a in m.alarms(report)}
        for version, features in report.items():
            for name, stats in features.items():
                if math.isfinite(stats["psi"]):
                    psi.add_metric([version, name], stats["psi"])
                    ks.add_metric([version, name], stats["ks"])
                    alarm.add_metric([version, name], float((version, name) in alarmed))
        yield psi
        yield ks
        yield alarm
        lag = GaugeMetricFamily(
            "stream_app_consumer_lag_messages",
            "Messages not yet consumed, per topic and consumer group.",
            labels=["topic", "group"],
        )
        for (topic, group), messages in m.lags.items():
            lag.add_metric([topic, group], messages)
        yield lag
        info = GaugeMetricFamily(
            "stream_app_model_info", "1 for the model version in each role.",
            labels=["role", "model_version"],
        )  # fmt: skip
        for role, version in m.roles.items():
            info.add_metric([role, version], 1.0)
        yield info


def _estimate_gauges(report: list[dict[str, Any]]) -> Iterator[GaugeMetricFamily]:
    estimated = GaugeMetricFamily(
        "stream_app_model_metric_estimated",
        "Metric per model version estimated without labels (CBPE for binary, DLE for "
        "regression) over the predictions of the rolling accuracy window.",
        labels=["model_version", "role", "metric", "method"],
    )
    error = GaugeMetricFamily(
        "stream_app_estimate_error",
        "Mean absolute difference between the estimated and the realised metric over the "
        "windows whose labels are in (how far the estimate can be trusted).",
        labels=["model_version", "role", "metric", "method"],
    )
    skill = GaugeMetricFamily(
        "stream_app_model_skill",
        "1 - the model's loss over a constant's on the same live labels (log loss, or squared "
        "error: R^2); 0 or less is no skill.",
        labels=["model_version", "role"],
    )
    for entry in report:
        labels = [entry["model_version"], entry["role"]]
        for metric, value in entry["estimated"].items():
            if value is not None:
                estimated.add_metric([*labels, metric, entry["method"]], value)
        for metric, value in entry["estimate_error"].items():
            if value is not None:
                error.add_metric([*labels, metric, entry["method"]], value)
        if entry["skill"] is not None:
            skill.add_metric(labels, entry["skill"])
    yield estimated
    yield error
    yield skill
