"""Exactly-once outputs: a batch's records and its consumed offsets in one Kafka transaction.

In ``consumer.guarantee = exactly_once`` a service's ``publish`` does not send anything: it
adds the records to the outputs of the batch being processed (``BatchOutputs``, through a
context variable the batch consumer sets for each batch's task). When the consumer commits,
``TransactionalProducer.commit`` opens a transaction, produces the outputs of every batch it
commits, adds their offsets (``send_offsets_to_transaction``, with the consumer's group
metadata, so a member the group has since replaced is fenced) and commits. A
``read_committed`` consumer then sees each output once: a crash before the commit aborts the
transaction (the broker does, when the worker's successor registers the same transactional
id, or after ``transaction_timeout_s``) and the batches are scored again from the committed
offsets; a crash after it leaves nothing to do again.

Outputs published outside a batch (the accuracy agent's timer for labels that arrived before
their prediction) go to the at-least-once publisher given as ``fallback``.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, Protocol

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from stream_app.errors import StreamAppError
from stream_app.kafka.producer import Publisher, output_producer_config, produce_when_room
from stream_app.messages import Record
from stream_app.settings import Settings

log = logging.getLogger(__name__)
RETRY_EVERY_S = 0.2
RENEWALS_PER_WINDOW, RENEWAL_WINDOW_S = 3, 300.0

# The outputs of the batch whose task is running (None outside a batch).
batch_outputs: contextvars.ContextVar[list[Record] | None] = contextvars.ContextVar(
    "batch_outputs", default=None
)


class TransactionAborted(StreamAppError):
    """The transaction was aborted: none of its records or offsets count; the batches it held
    must be consumed and processed again from the committed offsets."""


class TransactionFailed(StreamAppError):
    """The producer cannot go on (fenced, or a transaction it could not abort): the worker
    must end without committing; its successor's producer aborts what is left open."""


class BatchOutputs:
    """The services' publisher in exactly-once mode: records join the current batch's
    outputs (sent in its commit's transaction); outside a batch, ``fallback`` sends them."""

    def __init__(self, fallback: Publisher) -> None:
        self.fallback = fallback

    async def publish(self, records: Sequence[Record]) -> None:
        outputs = batch_outputs.get()
        if outputs is None:
            await self.fallback.publish(records)
        else:
            outputs.extend(records)


def transactional_id(settings: Settings, group_id: str) -> str:
    """The transactional id of the consumer of ``group_id`` in this worker: stable across
    restarts of the same worker (so a restart fences the killed one's open transaction at
    once) and distinct between live workers (their instance ids differ)."""
    instance = settings.worker.instance_id or f"{socket.gethostname()}-{settings.worker.web_port}"
    return f"{group_id}.{instance}"


class Transactions(Protocol):
    """What the batch consumer needs of a transactional producer."""

    def commit(
        self, records: Sequence[Record], offsets: list[TopicPartition], group_metadata: Any
    ) -> bool: ...

    def close(self) -> None: ...


class TransactionalProducer:
    """One consumer's transactional producer. ``commit`` runs on the consumer's thread and
    blocks until the transaction is committed or aborted."""

    def __init__(
        self,
        settings: Settings,
        transactional_id: str,
        make_producer: Callable[[dict[str, Any]], Any] = Producer,
    ) -> None:
        self.transactional_id = transactional_id
        self.timeout_s = settings.consumer.transaction_timeout_s
        self._config = output_producer_config(
            settings.kafka,
            {
                "transactional.id": transactional_id,
                "transaction.timeout.ms": int(self.timeout_s * 1000),
                "client.id": transactional_id,
                "queue.buffering.max.messages": 1_000_000,
                "log_level": 4,
            },
        )
        self._make_producer = make_producer
        self._producer = make_producer(self._config)
        self._ready = False
        self._renewals: deque[float] = deque()  # when fatal errors made a new producer

    def commit(
        self, records: Sequence[Record], offsets: list[TopicPartition], group_metadata: Any
    ) -> bool:
        """Produce ``records`` and commit ``offsets`` in one transaction.

        Returns False when the transactions could not begin (the broker is unreachable):
        nothing was sent, try again later with the same records. Raises
        ``TransactionAborted`` when the transaction was aborted (after any error; after a
        fatal one the producer is replaced), and ``TransactionFailed`` when the producer
        cannot go on (fenced again and again, or a transaction it could not abort): the
        worker must end.
        """
        if not self._ready:
            try:
                self._producer.init_transactions(self.timeout_s)
            except KafkaException as exc:
                if _error(exc).fatal() or not _error(exc).retriable():
                    raise TransactionFailed(f"transactions cannot begin: {_error(exc)}") from exc
                log.warning("%s: transactions not ready (%s); trying again",
                            self.transactional_id, _error(exc))  # fmt: skip
                return False
            self._ready = True
        try:
            self._producer.begin_transaction()
            deadline = time.monotonic() + self.timeout_s
            for topic, key, value, headers in records:
                # while librdkafka's queue is full, let it drain until the deadline (then the
                # transaction is given up)
                options = {"headers": list(headers)} if headers else {}
                produce_when_room(
                    self._producer, topic, value, key, RETRY_EVERY_S, deadline, **options
                )
            self._retrying(lambda t: self._producer.send_offsets_to_transaction(
                offsets, group_metadata, t))  # fmt: skip
            self._retrying(self._producer.commit_transaction)
        except KafkaException as exc:
            self._abort_after(_error(exc))
        return True

    def _abort_after(self, error: KafkaError) -> NoReturn:
        """Abort the open transaction after ``error``: ``TransactionAborted`` once it is, or
        ``TransactionFailed`` when ``error`` is fatal or the abort itself fails."""
        if error.fatal():
            self._renew(error)
        log.warning("%s: aborting the transaction (%s); its batches will be processed again",
                    self.transactional_id, error)  # fmt: skip
        try:
            self._retrying(self._producer.abort_transaction)
        except KafkaException as exc:
            if _error(exc).fatal():  # fenced meanwhile: the coordinator aborted it already
                self._renew(_error(exc))
            raise TransactionFailed(
                f"{self.transactional_id}: aborting the transaction failed ({_error(exc)}) "
                f"after {error}"
            ) from exc
        raise TransactionAborted(f"transaction aborted: {error}")

    def _renew(self, error: KafkaError) -> NoReturn:
        """After a fatal error: a new producer with the same transactional id (its
        ``init_transactions`` aborts what the old one left open), and the transaction counts
        as aborted. A broker away for longer than the transaction timeout ends this way: the
        coordinator aborted the transaction and bumped the epoch, which fences the producer.
        More than ``RENEWALS_PER_WINDOW`` renewals in ``RENEWAL_WINDOW_S`` mean another live
        producer shares the id (two workers with one ``worker.instance_id``): the worker ends.
        """
        now = time.monotonic()
        while self._renewals and now - self._renewals[0] > RENEWAL_WINDOW_S:
            self._renewals.popleft()
        if len(self._renewals) >= RENEWALS_PER_WINDOW:
            raise TransactionFailed(
                f"{self.transactional_id}: fenced {len(self._renewals) + 1} times in "
                f"{RENEWAL_WINDOW_S:.0f} s (does another worker have the same "
                f"worker.instance_id?); last: {error}"
            )
        self._renewals.append(now)
        log.warning("%s: the producer failed fatally (%s); the transaction is aborted and a "
                    "new producer takes its place", self.transactional_id, error)  # fmt: skip
        with contextlib.suppress(KafkaException):  # a failed producer raises its error again
            self._producer.flush(0)
        self._producer = self._make_producer(self._config)
        self._ready = False
        raise TransactionAborted(f"transaction aborted: {error}")

    def _retrying(self, call: Any) -> None:
        """``call(timeout)`` again while it fails with a retriable error, for up to the
        transaction timeout; then the last error is raised as needing an abort."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            left = max(deadline - time.monotonic(), RETRY_EVERY_S)
            try:
                call(left)
                return
            except KafkaException as exc:
                error = _error(exc)
                if not error.retriable() or error.fatal() or error.txn_requires_abort():
                    raise
                if time.monotonic() >= deadline:
                    raise KafkaException(
                        KafkaError(error.code(), str(error), txn_requires_abort=True)
                    ) from exc
                time.sleep(RETRY_EVERY_S)

    def close(self, timeout_s: float = 10.0) -> None:
        self._producer.flush(timeout_s)


def _error(exc: KafkaException) -> KafkaError:
    error = exc.args[0]
    if isinstance(error, KafkaError):
        return error
    return KafkaError(KafkaError._FAIL, str(error))
