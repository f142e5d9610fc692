"""Rolling accuracy of the whole deployment, from the ``accuracy-events`` topic.

A worker's own monitor only sees the labels of the ground-truth partitions it owns; the
orchestrator judges the champion on all of them. This feed reads every partition of
``accuracy-events`` (assigned, not subscribed: no consumer group, nothing committed),
starting one window back in time, into a ``RollingAccuracy``; and, for each champion, a
``LossTimeline`` of its per-row losses by event time over the retraining window (where the
orchestrator finds the change point and the label maturity that shape a retraining).
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import orjson
from confluent_kafka import Consumer, TopicPartition

from stream_app.contracts.wire import json_text
from stream_app.lifecycle.retrain_window import LossTimeline
from stream_app.models.evaluation import primary_metric, row_losses
from stream_app.monitoring.rolling import RollingAccuracy
from stream_app.settings import Settings
from stream_app.supervision import supervise
from stream_app.use_cases.spec import UseCase

log = logging.getLogger(__name__)
POLL_S = 0.5


class AccuracyFeed:
    """Follows ``accuracy-events`` while started; ``snapshot`` gives the rolling metrics."""

    def __init__(self, settings: Settings, use_case: UseCase) -> None:
        self.settings = settings
        self.use_case = use_case
        label = use_case.label
        self.window_ms = int(settings.monitoring.accuracy_window_s * 1000)
        self.rolling = RollingAccuracy(use_case.task, label.tolerance, label.threshold,
                                       self.window_ms)  # fmt: skip
        self.metric = primary_metric(use_case, settings.lifecycle)
        self.horizon_ms = max(self.window_ms, int(settings.lifecycle.retrain_window_s * 1000))
        self.timelines: dict[str, LossTimeline] = {}  # champion version -> its losses
        self._thread: ThreadPoolExecutor | None = None
        self._consumer: Any = None
        self._runner: asyncio.Task[None] | None = None
        self._stopping = False
        self.events = 0

    @property
    def running(self) -> bool:
        return self._runner is not None and not self._runner.done()

    def _open(self) -> None:
        topic = self.settings.kafka.topics.accuracy_events
        consumer = Consumer(
            self.settings.kafka.client_config(
                {
                    "group.id": f"{self.settings.worker.app_id}-accuracy-feed",  # never committed
                    "enable.auto.commit": False,
                    "auto.offset.reset": "latest",
                    "log_level": 4,
                }
            )
        )
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        since = int(time.time() * 1000) - self.horizon_ms
        wanted = [TopicPartition(topic, p, since) for p in partitions]
        consumer.assign(consumer.offsets_for_times(wanted, timeout=30))
        self._consumer = consumer

    def _poll(self) -> list[tuple[str, str, float, float, int, int]]:
        """On the feed's thread: the next accuracy events of this use case."""
        found = []
        name = self.use_case.name
        for message in self._consumer.consume(5000, POLL_S):
            if message.error() is not None:
                continue
            try:
                event = orjson.loads(json_text(message.value() or b""))  # framed or not
                if event.get("use_case") == name:
                    found.append((event["model_version"], event["role"], event["predicted"],
                                  event["actual"], event["evaluated_at"],
                                  event["label_delay_ms"]))  # fmt: skip
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue  # not an accuracy event of the schema: nothing to judge by
        return found

    async def start(self) -> None:
        if self.running:
            return
        self._stopping = False
        self.rolling = RollingAccuracy(self.rolling.task, self.rolling.tolerance,
                                       self.rolling.threshold, self.window_ms)  # fmt: skip
        self.timelines = {}
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="accuracy-feed")
        await asyncio.get_running_loop().run_in_executor(self._thread, self._open)
        self._runner = asyncio.ensure_future(self._run())
        supervise(self._runner, "following accuracy-events", lambda: self._stopping)
        log.info("following %s for the deployment's rolling accuracy",
                 self.settings.kafka.topics.accuracy_events)  # fmt: skip

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            try:
                events = await loop.run_in_executor(self._thread, self._poll)
            except Exception:
                log.exception("reading accuracy-events failed; trying again")
                await asyncio.sleep(2.0)
                continue
            self._add(events)  # on the event loop's thread, where snapshots are read
            self.events += len(events)

    def _add(self, events: list[tuple[str, str, float, float, int, int]]) -> None:
        add = self.rolling.add
        rolling_since = int(time.time() * 1000) - self.window_ms
        champions: dict[str, list[tuple[float, float, int, int]]] = {}
        for version, role, predicted, actual, at_ms, delay_ms in events:
            if at_ms >= rolling_since:
                add(version, role, predicted, actual, at_ms)
            if role == "champion":
                champions.setdefault(version, []).append((predicted, actual, at_ms, delay_ms))
        label = self.use_case.label
        for version, rows in champions.items():
            values, actuals, at, delay = (np.array(c) for c in zip(*rows, strict=True))
            timeline = self.timelines.get(version)
            if timeline is None:
                timeline = self.timelines[version] = LossTimeline(self.horizon_ms)
            losses = row_losses(self.metric, values, actuals, label.tolerance, label.threshold)
            for event_ms, loss, delay_ms in zip((at - delay).tolist(), losses.tolist(),
                                                delay.tolist(), strict=True):  # fmt: skip
                timeline.add(event_ms, loss, delay_ms)

    def timeline(self, version: str, now_ms: int | None = None) -> LossTimeline | None:
        """The champion ``version``'s losses by event time (event time = evaluated at minus
        the label delay), pruned to the retraining window."""
        timeline = self.timelines.get(version)
        if timeline is not None:
            timeline.prune(now_ms or int(time.time() * 1000))
        return timeline

    async def stop(self) -> None:
        self._stopping = True
        if self._runner is not None:
            await asyncio.wait({self._runner}, timeout=10)
            self._runner = None
        if self._thread is not None:
            if self._consumer is not None:
                await asyncio.get_running_loop().run_in_executor(self._thread,
                                                                 self._consumer.close)  # fmt: skip
                self._consumer = None
            self._thread.shutdown(wait=True)
            self._thread = None

    def snapshot(self, now_ms: int | None = None) -> dict[tuple[str, str], dict[str, float]]:
        return self.rolling.snapshot(now_ms or int(time.time() * 1000))
