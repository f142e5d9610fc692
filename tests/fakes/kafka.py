"""An in-memory stand-in for confluent-kafka's ``Consumer``, for unit tests of the delivery core.

It holds a log per partition, serves ``consume`` from the assigned partitions' positions,
records every commit, and lets a test script what librdkafka does between two polls: a
rebalance (the callbacks run inside ``consume``, on the consumer's thread, as librdkafka runs
them), a lost assignment, or an error raised out of ``consume`` or ``commit``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition


@dataclass
class FakeMessage:
    _topic: str
    _partition: int
    _offset: int
    _value: bytes
    _error: KafkaError | None = None
    _headers: list[tuple[str, bytes | None]] | None = None  # librdkafka's None when none

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return f"k{self._offset}".encode()

    def value(self) -> bytes:
        return self._value

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_795_000_000_000 + self._offset)

    def headers(self) -> list[tuple[str, bytes | None]] | None:
        return self._headers

    def error(self) -> KafkaError | None:
        return self._error


@dataclass
class Commit:
    offsets: dict[tuple[str, int], int]
    asynchronous: bool
    during_revoke: bool = False


Action = Callable[["FakeConsumer"], None]


@dataclass
class FakeConsumer:
    """One group member's consumer. ``logs[(topic, partition)]`` are the partitions' values."""

    config: dict[str, Any]
    logs: dict[tuple[str, int], list[bytes]] = field(default_factory=dict)
    commits: list[Commit] = field(default_factory=list)
    positions: dict[tuple[str, int], int] = field(default_factory=dict)
    assigned: list[tuple[str, int]] = field(default_factory=list)
    paused: set[tuple[str, int]] = field(default_factory=set)
    closed: bool = False
    # what happens at the next consume calls, in order (one action per call)
    script: list[Action] = field(default_factory=list)
    # raised by the next commit, if set
    commit_error: KafkaError | None = None
    in_revoke: bool = False
    consume_calls: int = 0
    generation: int = 1  # the group generation, as the transactional fake checks it
    _callbacks: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- what a test does -----------------------------------------------------------------

    def produce(self, topic: str, partition: int, values: list[bytes]) -> None:
        with self._lock:
            self.logs.setdefault((topic, partition), []).extend(values)

    def committed_offsets(self) -> dict[tuple[str, int], int]:
        """The last committed offset per partition."""
        result: dict[tuple[str, int], int] = {}
        for commit in self.commits:
            result.update(commit.offsets)
        return result

    def assign_now(self, partitions: list[tuple[str, int]]) -> None:
        """A rebalance that gives this member ``partitions`` (callback on this thread)."""
        self.assigned = list(partitions)
        self.generation += 1
        for tp in partitions:
            self.positions.setdefault(tp, self.committed_offsets().get(tp, 0))
        self._callbacks["on_assign"](self, [TopicPartition(t, p) for t, p in partitions])

    def revoke_now(self, partitions: list[tuple[str, int]], lost: bool = False) -> None:
        """A rebalance that takes ``partitions`` away (lost: the group forgot this member)."""
        self.in_revoke = True
        try:
            tps = [TopicPartition(t, p) for t, p in partitions]
            # as librdkafka: lost partitions go to on_lost when it is given, else on_revoke
            if lost and self._callbacks.get("on_lost") is not None:
                self._callbacks["on_lost"](self, tps)
            else:
                self._callbacks["on_revoke"](self, tps)
        finally:
            self.in_revoke = False
        self.assigned = [tp for tp in self.assigned if tp not in partitions]
        for tp in partitions:  # a later owner starts from the committed offset
            self.positions.pop(tp, None)

    # -- the confluent-kafka Consumer interface the batch consumer uses -------------------

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self._callbacks = callbacks

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[FakeMessage]:
        self.consume_calls += 1
        if self.script:
            self.script.pop(0)(self)
        found: list[FakeMessage] = []
        with self._lock:
            for tp in self.assigned:
                if tp in self.paused:
                    continue
                log, position = self.logs.get(tp, []), self.positions.get(tp, 0)
                while position < len(log) and len(found) < num_messages:
                    found.append(FakeMessage(tp[0], tp[1], position, log[position]))
                    position += 1
                self.positions[tp] = position
        if not found and timeout > 0:
            time.sleep(min(timeout, 0.005))
        return found

    def poll(self, timeout: float = -1) -> FakeMessage | None:
        found = self.consume(1, 0)
        return found[0] if found else None

    def seek(self, partition: TopicPartition) -> None:
        key = (partition.topic, partition.partition)
        assert key in self.assigned, f"seek on {key}, not assigned"
        self.positions[key] = max(partition.offset, 0)  # OFFSET_BEGINNING (-2): the start

    def committed(self, partitions: list[TopicPartition], timeout: float = -1) -> Any:
        offsets = self.committed_offsets()
        return [
            TopicPartition(tp.topic, tp.partition, offsets.get((tp.topic, tp.partition), -1001))
            for tp in partitions
        ]

    def consumer_group_metadata(self) -> Any:
        return ("g", self.generation)

    def commit(self, offsets: list[TopicPartition], asynchronous: bool = True) -> Any:
        if self.commit_error is not None:
            error, self.commit_error = self.commit_error, None
            raise KafkaException(error)
        committed = {(tp.topic, tp.partition): tp.offset for tp in offsets}
        self.commits.append(Commit(committed, asynchronous, self.in_revoke))
        if asynchronous:
            self.config["on_commit"](None, offsets)
            return None
        return offsets

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(t, p) for t, p in self.assigned]

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [
            TopicPartition(tp.topic, tp.partition, self.positions.get((tp.topic, tp.partition), 0))
            for tp in partitions
        ]

    def get_watermark_offsets(self, partition: TopicPartition, cached: bool = False) -> Any:
        return (0, len(self.logs.get((partition.topic, partition.partition), [])))

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused |= {(tp.topic, tp.partition) for tp in partitions}

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.paused -= {(tp.topic, tp.partition) for tp in partitions}

    def close(self) -> None:
        if self.assigned:
            self.revoke_now(list(self.assigned))
        self.closed = True


def raise_from_consume(error: KafkaError) -> Action:
    def action(consumer: FakeConsumer) -> None:
        raise KafkaException(error)

    return action


@dataclass
class FakeTransactions:
    """A transactional producer in memory: a committed transaction records its records and
    adds its offsets to ``consumer``'s commits, as Kafka's TxnOffsetCommit does; a test can
    make the next commit abort, fence a member of an older generation, or find the
    transactions not ready."""

    consumer: FakeConsumer | None = None
    committed: list[list[Any]] = field(default_factory=list)  # records per transaction
    aborted: int = 0
    abort_next: bool = False
    not_ready_next: bool = False
    closed: bool = False
    group_generation: int | None = None  # set: the group's generation, older ones are fenced

    def commit(self, records: Any, offsets: list[TopicPartition], group_metadata: Any) -> bool:
        from stream_app.kafka.transactions import TransactionAborted

        assert self.consumer is not None
        if self.not_ready_next:
            self.not_ready_next = False
            return False
        fenced = self.group_generation is not None and group_metadata[1] != self.group_generation
        if self.abort_next or fenced:
            self.abort_next = False
            self.aborted += 1
            raise TransactionAborted("aborted by the test")
        self.committed.append(list(records))
        committed = {(tp.topic, tp.partition): tp.offset for tp in offsets}
        self.consumer.commits.append(Commit(committed, False, self.consumer.in_revoke))
        return True

    def close(self) -> None:
        self.closed = True
