"""Batch consumers of the agents: a topic read with confluent-kafka, in batches.

Faust delivers a stream one event at a time, and its per-event machinery (about 60 us of CPU
per message here, measured) caps a worker at about 15,000 events/s before any work is done.
This consumer runs inside the same Faust app (started and stopped with it) but reads whole
batches from librdkafka and hands them to a service (scoring, features).

Guarantees, the same as the Faust agent's:
- offsets are committed only for batches whose outputs Kafka and Cassandra acknowledged, in
  the order the batches were read (never past unfinished work);
- at most ``batches_in_flight`` batches are processed at once; when they stay busy (an outage)
  the consumer pauses its partitions and keeps polling, so it stays in its group;
- on a rebalance the revoked partitions' batches are finished and committed before the
  partitions are given up; an unexpected error exits the process without committing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, TopicPartition

from stream_app.agents.attach import attach
from stream_app.agents.scoring import crash_without_commit
from stream_app.scoring.batch import InputMessage
from stream_app.settings import Settings

log = logging.getLogger(__name__)
DRAIN_TIMEOUT_S = 120.0
PAUSE_AFTER_S = 10.0  # well below max.poll.interval.ms (5 minutes)
LAG_EVERY_S = 2.0


def consumer_config(settings: Settings, group_id: str) -> dict[str, Any]:
    return {
        **settings.kafka.client_config(),
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        "fetch.wait.max.ms": 20,
        "session.timeout.ms": int(settings.worker.session_timeout_s * 1000),
        "heartbeat.interval.ms": int(settings.worker.session_timeout_s * 1000 / 3),
        "log_level": 4,
    }


def to_input(message: Any) -> InputMessage:
    return InputMessage(
        message.topic(),
        message.partition(),
        message.offset(),
        message.key(),
        message.value(),
        message.timestamp()[1],
    )


class BatchProcessor(Protocol):
    """What a batch consumer feeds: ``process`` returns once the batch's outputs are
    acknowledged; ``on_partitions_revoked`` (optional) forgets state of lost partitions."""

    async def process(self, messages: Sequence[InputMessage]) -> Any: ...


class BatchConsumer:
    """Consumes one topic for a service, committing only finished work."""

    def __init__(
        self,
        settings: Settings,
        service: BatchProcessor,
        *,
        topic: str,
        group_id: str,
        batch_size: int,
        batches_in_flight: int,
        report_lag: Callable[[str, str, int], None] | None = None,
    ) -> None:
        self.settings = settings
        self.service = service
        self.group_id = group_id
        self.topic = topic
        self.batch_size = batch_size
        self.batches_in_flight = batches_in_flight
        self.report_lag = report_lag
        self._last_lag = 0.0
        self._consumer: Any = None
        # One thread owns the consumer: consume, commit and the rebalance callbacks run on it.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scoring-consumer")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._in_flight: deque[tuple[dict[tuple[str, int], int], asyncio.Task[Any]]] = deque()
        self._finished = threading.Lock()
        self._done_offsets: dict[tuple[str, int], int] = {}  # next offset to commit, per partition
        self._stopping = False
        self._runner: asyncio.Task[None] | None = None
        self._paused = False
        self._last_commit = 0.0

    # -- lifecycle (called by the Faust app) ----------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._consumer = Consumer(consumer_config(self.settings, self.group_id))
        await self._on_thread(
            lambda: self._consumer.subscribe(
                [self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke
            )
        )
        self._runner = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        self._stopping = True
        if self._runner is not None:
            await asyncio.wait({self._runner}, timeout=DRAIN_TIMEOUT_S)
        await self._drain()
        await self._on_thread(self._commit_sync)
        await self._on_thread(self._consumer.close)
        self._thread.shutdown(wait=True)

    # -- the loop ---------------------------------------------------------------------------

    async def _on_thread(self, function: Any) -> Any:
        assert self._loop is not None
        return await self._loop.run_in_executor(self._thread, function)

    def _poll(self, batch_size: int, wait_s: float) -> list[Any]:
        """On the consumer thread: commit finished work, then read the next batch.

        The batch is whatever has arrived, up to ``batch_size``; if nothing has, wait up to
        ``wait_s`` for the first message. So a quiet stream is scored at once (low latency)
        and a busy one in large batches (high throughput), without a fixed wait.
        """
        self._commit_async()
        self._measure_lag()
        messages = list(self._consumer.consume(batch_size, 0))
        if not messages:
            messages = list(self._consumer.consume(1, wait_s))
            if messages:
                messages += self._consumer.consume(batch_size - 1, 0)
        return messages

    async def _run(self) -> None:
        wait_s = self.settings.scoring.batch_wait_s
        while not self._stopping:
            self._collect_finished()
            if len(self._in_flight) >= self.batches_in_flight:
                await self._wait_for_room()
                continue
            messages = await self._on_thread(lambda: self._poll(self.batch_size, wait_s))
            inputs = []
            for message in messages:
                error = message.error()
                if error is None:
                    inputs.append(to_input(message))
                elif error.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error on %s: %s", self.topic, error)
            if inputs:
                self._submit(inputs)

    def _submit(self, inputs: list[InputMessage]) -> None:
        last: dict[tuple[str, int], int] = {}
        for message in inputs:
            key = (message.topic, message.partition)
            last[key] = max(last.get(key, -1), message.offset)
        task = asyncio.ensure_future(self.service.process(inputs))
        self._in_flight.append(({k: v + 1 for k, v in last.items()}, task))

    def _collect_finished(self) -> None:
        """Record the offsets of finished batches, oldest first, stopping at the first
        unfinished one; an unexpected failure exits without committing."""
        while self._in_flight and self._in_flight[0][1].done():
            offsets, task = self._in_flight.popleft()
            if task.cancelled() or task.exception() is not None:
                try:
                    task.result()
                except BaseException:
                    crash_without_commit("scoring a batch failed unexpectedly")
            with self._finished:
                self._done_offsets.update(offsets)

    async def _wait_for_room(self) -> None:
        """All batch slots are busy: wait for the oldest batch. If that takes long (an
        outage), pause the partitions and keep polling so the consumer stays in its group."""
        started = time.monotonic()
        while len(self._in_flight) >= self.batches_in_flight:
            await asyncio.wait({self._in_flight[0][1]}, timeout=1.0)
            self._collect_finished()
            if time.monotonic() - started > PAUSE_AFTER_S:
                if not self._paused:
                    log.warning("scoring is stalled; pausing %s until it recovers", self.topic)
                    await self._on_thread(lambda: self._consumer.pause(self._consumer.assignment()))
                    self._paused = True
                await self._on_thread(lambda: self._consumer.poll(0))  # serve the group protocol
        if self._paused:
            await self._on_thread(lambda: self._consumer.resume(self._consumer.assignment()))
            self._paused = False

    async def _drain(self) -> None:
        """Wait for every batch in flight to finish and record its offsets."""
        tasks = [task for _, task in self._in_flight]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=DRAIN_TIMEOUT_S)
            if pending:
                log.error("%d batches still unfinished at shutdown; not committing them",
                          len(pending))  # fmt: skip
        self._collect_finished()

    # -- commits and rebalances (consumer thread) -----------------------------------------

    def _take_offsets(self) -> list[TopicPartition]:
        with self._finished:
            offsets = [TopicPartition(t, p, o) for (t, p), o in self._done_offsets.items()]
            self._done_offsets.clear()
        return offsets

    def _commit_async(self) -> None:
        """Commit finished work at most every ``commit_interval_s`` (each commit is a write to
        Kafka's offsets topic; committing less often only widens what a crash re-scores)."""
        now = time.monotonic()
        if now - self._last_commit < self.settings.scoring.commit_interval_s:
            return
        self._last_commit = now
        offsets = self._take_offsets()
        if offsets:
            self._consumer.commit(offsets=offsets, asynchronous=True)

    def _measure_lag(self) -> None:
        """Every few seconds: messages between this consumer's positions and the ends of its
        partitions (from the offsets the last fetches reported; no broker round trip)."""
        now = time.monotonic()
        if self.report_lag is None or now - self._last_lag < LAG_EVERY_S:
            return
        self._last_lag = now
        lag = 0
        for tp in self._consumer.position(self._consumer.assignment()):
            _, high = self._consumer.get_watermark_offsets(tp, cached=True)
            if tp.offset >= 0 and high >= 0:
                lag += max(high - tp.offset, 0)
        self.report_lag(self.topic, self.group_id, lag)

    def _commit_sync(self) -> None:
        offsets = self._take_offsets()
        if offsets:
            self._consumer.commit(offsets=offsets, asynchronous=False)

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        log.info("%s consumer assigned %s", self.topic, [p.partition for p in partitions])
        self._paused = False
        take_over = getattr(self.service, "on_partitions_assigned", None)
        if take_over is not None and self._loop is not None:
            assigned = [p.partition for p in partitions]
            asyncio.run_coroutine_threadsafe(take_over(assigned), self._loop)

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        """Finish the batches in hand and commit them before the partitions go elsewhere."""
        log.info("%s consumer revoked %s; finishing batches in flight", self.topic,
                 [p.partition for p in partitions])  # fmt: skip
        assert self._loop is not None
        if self._in_flight:
            asyncio.run_coroutine_threadsafe(self._drain(), self._loop).result(DRAIN_TIMEOUT_S)
        self._commit_sync()
        forget = getattr(self.service, "on_partitions_revoked", None)
        if forget is not None:
            lost = [p.partition for p in partitions]
            self._loop.call_soon_threadsafe(forget, lost)


def register(app: Any, consumer: BatchConsumer) -> BatchConsumer:
    """Start ``consumer`` with ``app`` (and stop it with it)."""
    attach(app, f"BatchConsumer_{consumer.topic}", consumer.start, consumer.stop)
    return consumer
