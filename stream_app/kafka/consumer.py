"""Batch consumers of the agents: a topic read with confluent-kafka, in batches.

Faust delivers a stream one event at a time, and its per-event machinery (about 60 us of CPU
per message here, measured) caps a worker at about 15,000 events/s before any work is done.
This consumer runs inside the same Faust app (started and stopped with it) but reads whole
batches from librdkafka and hands them to a service (scoring, features, accuracy).

Guarantees:
- offsets are committed only for batches whose outputs Kafka and Cassandra acknowledged, in
  the order the batches were read (never past unfinished work); a commit that fails is tried
  again at the next interval;
- at most ``batches_in_flight`` batches are processed at once; when they stay busy (an outage)
  the consumer pauses its partitions and keeps polling, so it stays in its group;
- on a rebalance the revoked partitions' batches are finished and committed before the
  partitions are given up; partitions *lost* (the group forgot this member, e.g. after a broker
  restart longer than the session timeout) are finished but not committed: their next owner
  scores the uncommitted tail again;
- errors the client recovers from (an unknown member, a moved coordinator, brokers down) are
  logged and the consumer goes on (librdkafka rejoins by itself); any other error, and any
  failure of a batch, ends the worker (``supervision``), never the consumer alone.

Given ``transactions`` (``consumer.guarantee = exactly_once``), each batch's outputs are kept
(``transactions.batch_outputs``) instead of sent, and a commit is one transaction holding the
outputs of the batches it commits and their offsets. When a transaction is aborted, or
partitions are lost, the outputs in hand are dropped and the consumer goes back to the
committed offsets: those batches are processed again, and only one copy is ever committed.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from stream_app.kafka.transactions import TransactionAborted, Transactions, batch_outputs
from stream_app.messages import NO_HEADERS, InputMessage, Record
from stream_app.settings import KafkaSettings
from stream_app.supervision import Crash, crash_without_commit, supervise

log = logging.getLogger(__name__)
DRAIN_TIMEOUT_S = 120.0
PAUSE_AFTER_S = 10.0  # well below max.poll.interval.ms (5 minutes)
LAG_EVERY_S = 2.0
LOG_REPEATS_EVERY_S = 30.0
RETRY_AFTER_ERROR_S = 0.5
REWIND_TIMEOUT_S = 30.0

# Group and connection errors that librdkafka recovers from by itself (rejoin, find the new
# coordinator, reconnect): seen around broker restarts and rebalances.
RECOVERABLE = frozenset(
    {
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.NETWORK_EXCEPTION,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,  # metadata not yet loaded after a broker restart
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._TIMED_OUT,
        KafkaError._MAX_POLL_EXCEEDED,
        KafkaError._PARTITION_EOF,
        KafkaError._NO_OFFSET,
        KafkaError._WAIT_COORD,
        KafkaError._RESOLVE,
        KafkaError._DESTROY,
        KafkaError._IN_PROGRESS,
        KafkaError._STATE,
    }
)


@dataclass(frozen=True)
class ConsumerProgress:
    """One consumer's state, on the monotonic clock (seconds)."""

    topic: str
    group: str
    started: float  # when the consumer started
    last_poll: float | None  # the loop's last return from Kafka
    last_batch: float | None  # the last batch whose outputs were acknowledged
    in_flight: int  # batches being processed
    lag: int | None  # messages behind the consumer's position (None: not known yet)


@dataclass(frozen=True)
class ConsumerState:
    """Where one consumer stands in its group (what readiness reports).

    ``starting``: not subscribed yet; ``waiting``: subscribed, no partition assigned (the
    group is forming, or it has more members than the topic has partitions); ``assigned``:
    consuming ``partitions``; ``draining``: stopping (finishing batches in flight).
    """

    topic: str
    group: str
    state: Literal["starting", "waiting", "assigned", "draining"]
    partitions: tuple[int, ...]


def recoverable_or_raise(exc: KafkaException) -> KafkaError:
    """The error of ``exc`` when the consumer goes on after it (``recoverable``); otherwise
    ``exc`` itself is raised again."""
    error = exc.args[0]
    if not isinstance(error, KafkaError) or not recoverable(error):
        raise exc
    return error


def recoverable(error: KafkaError) -> bool:
    """Whether the consumer can go on after ``error`` (librdkafka recovers by itself)."""
    if error.fatal():
        return False
    return bool(error.retriable()) or error.code() in RECOVERABLE


@dataclass(frozen=True)
class BatchOptions:
    """How a batch consumer reads and commits."""

    batch_size: int  # most messages per batch
    batches_in_flight: int  # batches processed at once
    batch_wait_s: float  # longest wait for the first message of a batch
    commit_interval_s: float  # finished offsets are committed at most this often


def consumer_config(
    kafka: KafkaSettings, group_id: str, session_timeout_s: float
) -> dict[str, Any]:
    """librdkafka settings of a batch consumer in group ``group_id``."""
    return kafka.client_config(
        {
            "group.id": group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            "fetch.wait.max.ms": 20,
            "session.timeout.ms": int(session_timeout_s * 1000),
            "heartbeat.interval.ms": int(session_timeout_s * 1000 / 3),
            "log_level": 4,
        }
    )


def to_input(message: Any) -> InputMessage:
    """A confluent-kafka message as an ``InputMessage`` (its headers kept, in order)."""
    headers = message.headers()
    return InputMessage(
        message.topic(),
        message.partition(),
        message.offset(),
        message.key(),
        message.value(),
        message.timestamp()[1],
        tuple(headers) if headers else NO_HEADERS,
    )


class BatchProcessor(Protocol):
    """What a batch consumer feeds: ``process`` returns once the batch's outputs are
    acknowledged; ``on_partitions_assigned`` / ``on_partitions_revoked`` (optional) take over
    and forget state of partitions."""

    async def process(self, messages: Sequence[InputMessage]) -> Any: ...


class _Throttled:
    """Logs a repeated warning once per ``LOG_REPEATS_EVERY_S`` (a broker down for a minute
    would otherwise fill the log)."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}

    def warning(self, kind: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last.get(kind, -LOG_REPEATS_EVERY_S) >= LOG_REPEATS_EVERY_S:
            self._last[kind] = now
            log.warning(message, *args)


Partition = tuple[str, int]


class BatchConsumer:
    """Consumes one topic for a service, committing only finished work."""

    def __init__(
        self,
        config: dict[str, Any],
        service: BatchProcessor,
        *,
        topic: str,
        options: BatchOptions,
        report_lag: Callable[[str, str, int], None] | None = None,
        report_commit: Callable[[float], None] | None = None,
        make_consumer: Callable[[dict[str, Any]], Any] = Consumer,
        crash: Crash = crash_without_commit,
        transactions: Transactions | None = None,
    ) -> None:
        self.config = config
        self.service = service
        self.group_id: str = config["group.id"]
        self.topic = topic
        self.options = options
        self.report_lag = report_lag
        self.report_commit = report_commit  # seconds from a batch done to its offsets acked
        self._make_consumer = make_consumer
        self._crash = crash
        self._transactions = transactions
        self._consumer: Any = None
        # One thread owns the consumer: consume, commit and the rebalance callbacks run on it.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"consumer-{topic}")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._in_flight: deque[tuple[dict[Partition, int], asyncio.Task[Any], list[Record]]]
        self._in_flight = deque()
        self._finished = threading.Lock()
        self._done: dict[Partition, int] = {}  # next offset to commit, per partition
        self._acked: dict[Partition, int] = {}  # the last offset Kafka confirmed committed
        self._unacked: deque[tuple[dict[Partition, int], float]] = deque()  # done, not acked
        self._outputs: list[Record] = []  # exactly once: finished batches' outputs, not sent
        self._rewind = False  # exactly once: outputs dropped, go back to the committed offsets
        self._owned: set[Partition] = set()
        self._fatal: KafkaError | None = None
        self._stopping = False
        self._subscribed = False
        self._runner: asyncio.Task[None] | None = None
        self._paused = False
        self._last_commit = 0.0
        self._last_lag_at = 0.0
        self._throttled = _Throttled()
        self._started = time.monotonic()
        self.last_poll: float | None = None
        self.last_batch: float | None = None
        self.lag: int | None = None

    # -- lifecycle (called by the Faust app) ----------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._started = time.monotonic()
        config = {**self.config, "on_commit": self._on_commit, "error_cb": self._on_error}
        self._consumer = self._make_consumer(config)
        await self._on_thread(
            lambda: self._consumer.subscribe(
                [self.topic],
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
        )
        self._subscribed = True
        self._runner = asyncio.ensure_future(self._run())
        supervise(self._runner, f"the {self.topic} consumer", lambda: self._stopping, self._crash)

    async def stop(self) -> None:
        self._stopping = True
        if self._runner is not None:
            await asyncio.wait({self._runner}, timeout=DRAIN_TIMEOUT_S)
        await self._drain()
        await self._on_thread(lambda: self._commit(self._pending(), asynchronous=False))
        await self._on_thread(self._consumer.close)
        self._thread.shutdown(wait=True)
        if self._transactions is not None:
            self._transactions.close()

    def state(self) -> ConsumerState:
        """Where this consumer stands in its group."""
        with self._finished:
            partitions = tuple(sorted(p for t, p in self._owned if t == self.topic))
        state: Literal["starting", "waiting", "assigned", "draining"]
        if self._stopping:
            state = "draining"
        elif not self._subscribed:
            state = "starting"
        else:
            state = "assigned" if partitions else "waiting"
        return ConsumerState(self.topic, self.group_id, state, partitions)

    def progress(self) -> ConsumerProgress:
        """What the liveness watchdog judges."""
        return ConsumerProgress(
            self.topic, self.group_id, self._started, self.last_poll, self.last_batch,
            len(self._in_flight), self.lag,
        )  # fmt: skip

    # -- the loop ---------------------------------------------------------------------------

    async def _on_thread(self, function: Any) -> Any:
        assert self._loop is not None
        return await self._loop.run_in_executor(self._thread, function)

    def _poll(self) -> list[Any]:
        """On the consumer thread: commit finished work, then read the next batch.

        The batch is whatever has arrived, up to ``batch_size``; if nothing has, wait up to
        ``batch_wait_s`` for the first message. So a quiet stream is scored at once (low
        latency) and a busy one in large batches (high throughput), without a fixed wait.
        """
        self._commit_due()
        self._measure_lag()
        size, consume = self.options.batch_size, self._consumer.consume
        messages = list(consume(size, 0))
        if not messages:
            messages = list(consume(1, self.options.batch_wait_s))
            if messages:
                messages += consume(size - 1, 0)
        self.last_poll = time.monotonic()
        return messages

    async def _run(self) -> None:
        while not self._stopping:
            self._collect_finished()
            if self._fatal is not None:
                raise KafkaException(self._fatal)
            if self._rewind:
                await self._go_back_to_committed()
                continue
            if len(self._in_flight) >= self.options.batches_in_flight:
                await self._wait_for_room()
                continue
            try:
                messages = await self._on_thread(self._poll)
            except KafkaException as exc:
                error = recoverable_or_raise(exc)
                self._throttled.warning(f"poll-{error.code()}", "%s consumer: %s; going on",
                                        self.topic, error)  # fmt: skip
                await asyncio.sleep(RETRY_AFTER_ERROR_S)
                continue
            if self._rewind:  # read past outputs just dropped: read again after going back
                continue
            inputs = []
            for message in messages:
                error = message.error()
                if error is None:
                    inputs.append(to_input(message))
                elif error.fatal():
                    raise KafkaException(error)
                elif error.code() != KafkaError._PARTITION_EOF:
                    self._throttled.warning(f"message-{error.code()}", "%s consumer: %s",
                                            self.topic, error)  # fmt: skip
            if inputs:
                self._submit(inputs)
            elif not self._in_flight:
                self.last_batch = time.monotonic()  # idle: nothing of ours waits

    def _submit(self, inputs: list[InputMessage]) -> None:
        last: dict[Partition, int] = {}
        for message in inputs:
            key = (message.topic, message.partition)
            last[key] = max(last.get(key, -1), message.offset)
        outputs: list[Record] = []
        context = contextvars.copy_context()
        if self._transactions is not None:
            context.run(batch_outputs.set, outputs)  # the batch's publishes land here
        task = asyncio.get_running_loop().create_task(self.service.process(inputs), context=context)
        self._in_flight.append(({k: v + 1 for k, v in last.items()}, task, outputs))

    def _collect_finished(self) -> None:
        """Record the offsets of finished batches, oldest first, stopping at the first
        unfinished one; a failed batch ends the worker without committing it."""
        while self._in_flight and self._in_flight[0][1].done():
            offsets, task, outputs = self._in_flight.popleft()
            if task.cancelled() or task.exception() is not None:
                error = None if task.cancelled() else task.exception()
                self._crash(f"processing a batch of {self.topic} failed unexpectedly: {error!r}")
                continue
            with self._finished:
                if self._transactions is not None:
                    if self._rewind or any(p not in self._owned for p in offsets):
                        # its outputs can no longer be committed with all of its offsets
                        self._rewind = True
                        continue
                    self._outputs += outputs
                for partition, offset in offsets.items():
                    if partition in self._owned:  # not for partitions given up meanwhile
                        self._done[partition] = offset
                if self.report_commit is not None:
                    self._unacked.append((offsets, time.monotonic()))
            self.last_batch = time.monotonic()

    async def _wait_for_room(self) -> None:
        """All batch slots are busy: wait for the oldest batch. If that takes long (an
        outage), pause the partitions and keep polling so the consumer stays in its group."""
        started = time.monotonic()
        while len(self._in_flight) >= self.options.batches_in_flight:
            await asyncio.wait({self._in_flight[0][1]}, timeout=1.0)
            self._collect_finished()
            if time.monotonic() - started > PAUSE_AFTER_S:
                if not self._paused:
                    log.warning("%s: work is stalled; pausing until it recovers", self.topic)
                    await self._on_thread(lambda: self._consumer.pause(self._consumer.assignment()))
                    self._paused = True
                await self._on_thread(self._keep_membership)
        if self._paused:
            await self._on_thread(lambda: self._consumer.resume(self._consumer.assignment()))
            self._paused = False

    def _keep_membership(self) -> None:
        """On the consumer thread, while paused: serve the group protocol and callbacks. A
        message that arrives meanwhile (from a partition assigned since the pause) is not
        processed now: the consumer goes back to it, so it is read again later."""
        self._commit_due()
        message = self._consumer.poll(0)
        if message is not None and message.error() is None:
            self._consumer.seek(
                TopicPartition(message.topic(), message.partition(), message.offset())
            )
        self.last_poll = time.monotonic()

    async def _go_back_to_committed(self) -> None:
        """Exactly once, after a transaction was aborted or partitions were lost: let the
        batches in flight finish, drop every output not committed, and read the owned
        partitions again from their committed offsets."""
        await self._drain()
        with self._finished:
            self._outputs = []
            self._done = {p: o for p, o in self._acked.items() if p in self._owned}
            self._unacked.clear()
        try:
            await self._on_thread(self._seek_to_committed)
        except KafkaException as exc:
            error = recoverable_or_raise(exc)
            self._throttled.warning(
                "rewind", "%s consumer: going back to the committed offsets failed (%s); "
                "trying again", self.topic, error,
            )  # fmt: skip
            await asyncio.sleep(RETRY_AFTER_ERROR_S)
            return
        self._rewind = False

    def _seek_to_committed(self) -> None:
        assignment = self._consumer.assignment()
        if not assignment:
            return
        committed = self._consumer.committed(assignment, timeout=REWIND_TIMEOUT_S)
        for tp in committed:
            offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            self._consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
        log.warning("%s consumer: back to the committed offsets %s", self.topic,
                    {tp.partition: tp.offset for tp in committed})  # fmt: skip

    async def _drain(self) -> None:
        """Wait for every batch in flight to finish and record its offsets."""
        tasks = [task for _, task, _ in self._in_flight]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=DRAIN_TIMEOUT_S)
            if pending:
                log.error("%d batches of %s still unfinished; not committing them",
                          len(pending), self.topic)  # fmt: skip
        self._collect_finished()

    # -- commits (consumer thread) --------------------------------------------------------

    def _pending(self, only: set[Partition] | None = None) -> list[TopicPartition]:
        """Finished offsets Kafka has not confirmed yet (of ``only`` these partitions)."""
        with self._finished:
            return self._pending_locked(only)

    def _pending_locked(self, only: set[Partition] | None = None) -> list[TopicPartition]:
        return [
            TopicPartition(t, p, offset)
            for (t, p), offset in self._done.items()
            if offset > self._acked.get((t, p), -1) and (only is None or (t, p) in only)
        ]

    def _commit_due(self) -> None:
        """Commit finished work at most every ``commit_interval_s`` (each commit is a write to
        Kafka's offsets topic; committing less often only widens what a crash re-scores)."""
        now = time.monotonic()
        if now - self._last_commit < self.options.commit_interval_s:
            return
        self._last_commit = now
        self._commit(self._pending(), asynchronous=True)

    def _commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        """Commit ``offsets``; a failure the group recovers from leaves them pending (tried
        again at the next commit), any other ends the worker."""
        if self._transactions is not None:
            self._commit_transaction()
            return
        if not offsets:
            return
        try:
            committed = self._consumer.commit(offsets=offsets, asynchronous=asynchronous)
        except KafkaException as exc:
            error = recoverable_or_raise(exc)
            self._throttled.warning(
                "commit", "%s consumer: committing offsets failed (%s); trying again at the "
                "next commit", self.topic, error,
            )  # fmt: skip
            return
        if not asynchronous and committed:
            self._on_commit(None, committed)

    def _commit_transaction(self) -> None:
        """Exactly once: every finished batch's outputs and offsets in one transaction (all
        partitions: outputs are not kept apart by partition)."""
        assert self._transactions is not None
        if self._rewind:
            return
        with self._finished:
            records, offsets = self._outputs, self._pending_locked()
            self._outputs = []
        if not offsets and not records:
            return
        try:
            done = self._transactions.commit(
                records, offsets, self._consumer.consumer_group_metadata()
            )
        except TransactionAborted:
            self._rewind = True
            return
        except BaseException:  # the worker ends: nothing in hand may be committed after this
            self._rewind = True
            raise
        if not done:
            with self._finished:
                self._outputs = records + self._outputs
            return
        self._on_commit(None, offsets)

    def _on_commit(self, error: Any, partitions: list[TopicPartition]) -> None:
        """Kafka's answer to a commit (called on the consumer thread)."""
        if error is not None:
            self._throttled.warning("commit", "%s consumer: a commit failed (%s); trying again "
                                    "at the next commit", self.topic, error)  # fmt: skip
            return
        with self._finished:
            for tp in partitions:
                if tp.error is None and tp.offset >= 0:
                    key = (tp.topic, tp.partition)
                    self._acked[key] = max(self._acked.get(key, -1), tp.offset)
            acked = self._pop_acked()
        if self.report_commit is not None and self._loop is not None:
            now = time.monotonic()
            for done_at in acked:  # reported on the event loop, where the monitor lives
                self._loop.call_soon_threadsafe(self.report_commit, now - done_at)

    def _pop_acked(self) -> list[float]:
        """With the lock held: when each batch that Kafka now holds committed was done (a
        partition given up meanwhile counts as committed: its new owner carries on)."""
        acked = []
        while self._unacked and all(
            self._acked.get(partition, -1) >= offset or partition not in self._owned
            for partition, offset in self._unacked[0][0].items()
        ):
            acked.append(self._unacked.popleft()[1])
        return acked

    def _on_error(self, error: KafkaError) -> None:
        """Client-level errors (librdkafka's error callback, on the consumer thread)."""
        if error.fatal():
            log.critical("%s consumer: fatal error %s", self.topic, error)
            self._fatal = error  # the loop ends the worker
            return
        self._throttled.warning(f"error-{error.code()}", "%s consumer: %s", self.topic, error)

    def _measure_lag(self) -> None:
        """Every few seconds: messages between this consumer's positions and the ends of its
        partitions (from the offsets the last fetches reported; no broker round trip)."""
        now = time.monotonic()
        if now - self._last_lag_at < LAG_EVERY_S:
            return
        self._last_lag_at = now
        lag = 0
        for tp in self._consumer.position(self._consumer.assignment()):
            _, high = self._consumer.get_watermark_offsets(tp, cached=True)
            if tp.offset >= 0 and high >= 0:
                lag += max(high - tp.offset, 0)
        self.lag = lag
        if self.report_lag is not None:
            self.report_lag(self.topic, self.group_id, lag)

    # -- rebalances (consumer thread) -----------------------------------------------------

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        try:
            log.info("%s consumer assigned %s", self.topic, [p.partition for p in partitions])
            self._paused = False
            with self._finished:
                self._owned |= {(p.topic, p.partition) for p in partitions}
            take_over = getattr(self.service, "on_partitions_assigned", None)
            if take_over is not None and self._loop is not None:
                assigned = [p.partition for p in partitions]
                done = asyncio.run_coroutine_threadsafe(take_over(assigned), self._loop)
                done.add_done_callback(self._crash_on_error(f"taking over {assigned}"))
        except Exception:
            self._crash(f"taking over partitions of {self.topic} failed")

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._hand_back(partitions, lost=False)  # lost partitions go to ``_on_lost``

    def _on_lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._hand_back(partitions, lost=True)

    def _hand_back(self, partitions: list[TopicPartition], lost: bool) -> None:
        """Finish the batches in hand and, unless the partitions were lost, commit them before
        the partitions go elsewhere. Never raises into librdkafka: an error here that is not
        a recoverable Kafka one ends the worker."""
        gone = {(p.topic, p.partition) for p in partitions}
        numbers = sorted(p for _, p in gone)
        try:
            if lost:
                log.warning("%s consumer lost %s (the group no longer knew this member); "
                            "their uncommitted batches will be scored again by their next "
                            "owner", self.topic, numbers)  # fmt: skip
            else:
                log.info("%s consumer revoked %s; finishing batches in flight", self.topic,
                         numbers)  # fmt: skip
            assert self._loop is not None
            if self._in_flight:
                drained = asyncio.run_coroutine_threadsafe(self._drain(), self._loop)
                drained.result(DRAIN_TIMEOUT_S + 5)
            if lost and self._transactions is not None:
                self._rewind = True  # the outputs in hand are dropped, none committed
            elif not lost:
                self._commit(self._pending(only=gone), asynchronous=False)
            with self._finished:
                self._owned -= gone
                for partition in gone:
                    self._done.pop(partition, None)
                    self._acked.pop(partition, None)
            forget = getattr(self.service, "on_partitions_revoked", None)
            if forget is not None:
                self._loop.call_soon_threadsafe(self._forget, forget, numbers)
        except Exception:
            self._crash(f"handing back partitions {numbers} of {self.topic} failed")

    def _forget(self, forget: Callable[[list[int]], None], partitions: list[int]) -> None:
        """On the event loop: the service forgets the partitions' state."""
        try:
            forget(partitions)
        except Exception:
            self._crash(f"forgetting the state of partitions {partitions} of {self.topic} failed")

    def _crash_on_error(self, what: str) -> Callable[[Any], None]:
        def check(done: Any) -> None:
            if done.cancelled() or done.exception() is not None:
                error = None if done.cancelled() else done.exception()
                self._crash(f"{what} of {self.topic} failed: {error!r}")

        return check
