"""Liveness: is every consumer of the worker making progress?

A worker that stops making progress while work waits must not look healthy. Each batch
consumer reports its ``ConsumerProgress``; ``judge`` calls it stalled when

- its loop stopped polling Kafka for ``stall_after_s`` (a dead or blocked consumer thread), or
- work waits (batches in flight, or messages behind its position) and no batch finished for
  ``stall_after_s``,

in both cases while no outage was being retried in that time.

An outage (Cassandra or Kafka down) is not a stall: the services retry with back-off and say so
(``last_retry``), and a restart would not help. A stalled worker is logged, exposed as
``stream_app_consumer_stalled`` and fails ``/healthz``, so a supervisor restarts it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from stream_app.kafka.consumer import ConsumerProgress

log = logging.getLogger(__name__)


class StallGauges(Protocol):
    """The two gauges the watchdog keeps (``WorkerMetrics`` has them)."""

    consumer_stalled: Any
    seconds_since_progress: Any


@dataclass(frozen=True)
class Verdict:
    topic: str
    group: str
    stalled: bool
    reason: str
    seconds_since_progress: float


def judge(
    progress: ConsumerProgress, now: float, stall_after_s: float, last_retry: float | None
) -> Verdict:
    """Whether ``progress`` shows a stalled consumer, and why."""
    polled = progress.last_poll if progress.last_poll is not None else progress.started
    since_poll = now - polled
    finished = progress.last_batch if progress.last_batch is not None else progress.started
    since_batch = now - finished
    waiting = progress.in_flight > 0 or (progress.lag or 0) > 0
    retrying = last_retry is not None and now - last_retry < stall_after_s

    def verdict(stalled: bool, reason: str, since: float) -> Verdict:
        return Verdict(progress.topic, progress.group, stalled, reason, round(since, 1))

    if waiting and since_batch >= stall_after_s and not retrying:
        work = f"{progress.in_flight} batches in flight, lag {progress.lag}"
        return verdict(True, f"no batch finished for {since_batch:.0f} s ({work})", since_batch)
    if since_poll >= stall_after_s and not retrying:
        return verdict(True, f"has not polled Kafka for {since_poll:.0f} s", since_poll)
    if waiting and retrying:
        return verdict(False, "waiting for an outage to end (retrying)", since_batch)
    return verdict(False, "making progress" if waiting else "idle", since_batch if waiting else 0)


class Watchdog:
    """Judges every watched consumer; logs a stall once when it begins and when it ends,
    and keeps the ``stream_app_consumer_stalled`` gauges current."""

    def __init__(
        self,
        stall_after_s: float,
        last_retry: Callable[[], float | None],
        metrics: StallGauges | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stall_after_s = stall_after_s
        self.last_retry = last_retry
        self.metrics = metrics
        self.clock = clock
        self._sources: list[Callable[[], ConsumerProgress]] = []
        self._stalled: set[tuple[str, str]] = set()

    def watch(self, source: Callable[[], ConsumerProgress]) -> None:
        self._sources.append(source)

    def check(self) -> list[Verdict]:
        """Every consumer's verdict now."""
        now, last_retry = self.clock(), self.last_retry()
        verdicts = [judge(source(), now, self.stall_after_s, last_retry) for source in
                    self._sources]  # fmt: skip
        for v in verdicts:
            key = (v.topic, v.group)
            if v.stalled and key not in self._stalled:
                log.error("the %s consumer (group %s) is stalled: %s", v.topic, v.group, v.reason)
                self._stalled.add(key)
            elif not v.stalled and key in self._stalled:
                log.warning("the %s consumer (group %s) makes progress again", v.topic, v.group)
                self._stalled.discard(key)
            if self.metrics is not None:
                self.metrics.consumer_stalled.labels(v.topic, v.group).set(int(v.stalled))
                self.metrics.seconds_since_progress.labels(v.topic, v.group).set(
                    v.seconds_since_progress
                )
        return verdicts

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Whether the worker is alive and making progress, with the figures that say so."""
        verdicts = self.check()
        stalled = [v for v in verdicts if v.stalled]
        body = {
            "status": "stalled" if stalled else "ok",
            "stall_after_s": self.stall_after_s,
            "consumers": [asdict(v) for v in verdicts],
        }
        return not stalled, body
