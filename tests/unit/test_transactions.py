"""The transactional producer's outcomes, through an in-memory stand-in for confluent-kafka's
``Producer``: every error short of a fatal one aborts the transaction (the consumer then goes
back to its committed offsets); a fatal one, or an abort that fails, ends the worker."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from stream_app.kafka.transactions import (
    TransactionAborted,
    TransactionalProducer,
    TransactionFailed,
)
from stream_app.messages import Record
from stream_app.settings import Settings

RECORDS = [Record("predictions", b"k", b"v")]
OFFSETS = [TopicPartition("client-events", 0, 3)]


class FakeProducer:
    """Records the calls; ``fail[name]`` lists errors the next calls of ``name`` raise."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.calls: list[str] = []
        self.fail: dict[str, list[KafkaError]] = {}
        self.produced: list[tuple[str, bytes]] = []
        self.failed: KafkaError | None = None  # a fatal error: flush raises it, as librdkafka

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.fail.get(name):
            error = self.fail[name].pop(0)
            if error.fatal():
                self.failed = error
            raise KafkaException(error)

    def init_transactions(self, timeout: float) -> None:
        self._call("init")

    def begin_transaction(self) -> None:
        self._call("begin")

    def produce(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        self._call("produce")
        self.produced.append((topic, value))

    def send_offsets_to_transaction(self, offsets: Any, metadata: Any, timeout: float) -> None:
        self._call("offsets")

    def commit_transaction(self, timeout: float) -> None:
        self._call("commit")

    def abort_transaction(self, timeout: float) -> None:
        self._call("abort")

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        if self.failed is not None:
            raise KafkaException(self.failed)
        return 0


def producer(timeout_s: float = 1.0) -> tuple[TransactionalProducer, FakeProducer]:
    settings = Settings(consumer={"transaction_timeout_s": timeout_s})  # type: ignore[arg-type]
    made: list[FakeProducer] = []

    def make(config: dict[str, Any]) -> FakeProducer:
        made.append(FakeProducer(config))
        return made[-1]

    transactions = TransactionalProducer(settings, "g.worker-1", make)
    return transactions, made[0]


def test_a_transaction_holds_the_records_and_the_offsets_and_commits() -> None:
    transactions, fake = producer()
    assert transactions.commit(RECORDS, OFFSETS, object())
    assert fake.calls == ["init", "begin", "produce", "offsets", "commit"]
    assert fake.config["transactional.id"] == "g.worker-1"
    assert fake.config["enable.idempotence"] is True
    assert transactions.commit(RECORDS, OFFSETS, object())  # initialised once
    assert fake.calls.count("init") == 1


def test_a_broker_not_reachable_at_start_sends_nothing_and_asks_to_try_again() -> None:
    transactions, fake = producer()
    fake.fail["init"] = [KafkaError(KafkaError._TIMED_OUT, retriable=True)]
    assert transactions.commit(RECORDS, OFFSETS, object()) is False
    assert fake.produced == []
    assert transactions.commit(RECORDS, OFFSETS, object())


def test_a_retriable_commit_error_is_tried_again_within_the_timeout() -> None:
    transactions, fake = producer()
    fake.fail["commit"] = [KafkaError(KafkaError._TIMED_OUT, retriable=True)]
    assert transactions.commit(RECORDS, OFFSETS, object())
    assert fake.calls[-2:] == ["commit", "commit"]


@pytest.mark.parametrize(
    ("step", "error"),
    [
        ("produce", KafkaError(KafkaError._STATE)),  # the transaction failed meanwhile
        ("offsets", KafkaError(KafkaError.ILLEGAL_GENERATION, txn_requires_abort=True)),
        ("commit", KafkaError(KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, txn_requires_abort=True)),
        ("commit", KafkaError(KafkaError._TIMED_OUT, retriable=True)),  # past the timeout
    ],
)
def test_any_error_short_of_a_fatal_one_aborts_the_transaction(
    step: str, error: KafkaError
) -> None:
    transactions, fake = producer(timeout_s=1.0)
    fake.fail[step] = [error] * 10
    with pytest.raises(TransactionAborted):
        transactions.commit(RECORDS, OFFSETS, object())
    assert fake.calls[-1] == "abort"


def test_a_fenced_producer_is_replaced_and_one_fenced_again_and_again_ends_the_worker() -> None:
    """A broker away longer than the transaction timeout fences the producer (the coordinator
    aborted its transaction): a new one takes over. Repeated fencing means another live
    producer has the id."""
    transactions, fake = producer()
    fenced = KafkaError(KafkaError._FENCED, fatal=True)
    fake.fail["commit"] = [fenced]
    with pytest.raises(TransactionAborted):
        transactions.commit(RECORDS, OFFSETS, object())
    assert "abort" not in fake.calls
    assert transactions._producer is not fake
    assert transactions.commit(RECORDS, OFFSETS, object())  # the new producer initialises
    assert transactions._producer.calls[0] == "init"
    for _ in range(2):
        transactions._producer.fail["commit"] = [fenced]
        with pytest.raises(TransactionAborted):
            transactions.commit(RECORDS, OFFSETS, object())
    transactions._producer.fail["commit"] = [fenced]
    with pytest.raises(TransactionFailed, match="instance_id"):
        transactions.commit(RECORDS, OFFSETS, object())


def test_a_failed_abort_ends_the_worker() -> None:
    transactions, fake = producer()
    fake.fail["offsets"] = [KafkaError(KafkaError._STATE)]
    fake.fail["abort"] = [KafkaError(KafkaError._STATE)]
    with pytest.raises(TransactionFailed, match="aborting the transaction failed"):
        transactions.commit(RECORDS, OFFSETS, object())


def test_an_abort_the_coordinator_refuses_as_fenced_replaces_the_producer() -> None:
    """A worker cut off for longer than the transaction timeout: the coordinator aborted its
    transaction, so its own abort is refused with a fatal error; a new producer takes over."""
    transactions, fake = producer()
    fake.fail["offsets"] = [KafkaError(KafkaError._TIMED_OUT, txn_requires_abort=True)]
    fake.fail["abort"] = [KafkaError(KafkaError.INVALID_TXN_STATE, fatal=True)]
    with pytest.raises(TransactionAborted):
        transactions.commit(RECORDS, OFFSETS, object())
    assert transactions._producer is not fake


class _FullQueue:
    """A producer whose local queue is full for the first ``full`` calls."""

    def __init__(self, full: int) -> None:
        self.full = full
        self.produced: list[tuple[str, bytes | None]] = []
        self.polls = 0

    def produce(self, topic: str, value: bytes | None, key: bytes | None) -> None:
        if self.full > 0:
            self.full -= 1
            raise BufferError("Local: Queue full")
        self.produced.append((topic, value))

    def poll(self, timeout: float) -> int:
        self.polls += 1
        return 0


def test_a_full_queue_is_drained_and_tried_again_until_the_deadline() -> None:
    import time

    from stream_app.kafka.producer import produce_when_room

    producer = _FullQueue(full=3)
    produce_when_room(producer, "t", b"v", None, 0.0)  # type: ignore[arg-type]
    assert (producer.produced, producer.polls) == ([("t", b"v")], 3)
    stuck = _FullQueue(full=10**9)
    with pytest.raises(KafkaException) as raised:
        produce_when_room(stuck, "t", b"v", None, 0.0, time.monotonic() + 0.05)  # type: ignore[arg-type]
    assert raised.value.args[0].code() == KafkaError._MSG_TIMED_OUT
