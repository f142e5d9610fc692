"""Publishing to Kafka from the asyncio loop with confluent-kafka (librdkafka).

``publish`` hands a batch of records to librdkafka and returns once the broker acknowledged
every one of them (acks=all, idempotent producer): the caller moves offsets only after that.
Delivery reports are served by a background thread that hands the outcome to the loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, Producer

from stream_app.errors import StreamAppError
from stream_app.messages import NO_HEADERS, Record
from stream_app.settings import KafkaSettings
from stream_app.supervision import Crash, crash_without_commit

log = logging.getLogger(__name__)


def produce_when_room(
    producer: Producer,
    topic: str,
    value: bytes | None,
    key: bytes | None,
    drain_s: float = 0.05,
    deadline: float | None = None,
    **options: Any,
) -> None:
    """Hand one record to librdkafka (blocking callers); while its local queue is full, serve
    delivery reports for ``drain_s`` so it drains, and try again (until ``deadline``, a
    ``time.monotonic()`` instant: then ``KafkaException`` with ``_MSG_TIMED_OUT``)."""
    while True:
        try:
            producer.produce(topic, value, key, **options)
            return
        except BufferError:
            if deadline is not None and time.monotonic() > deadline:
                raise KafkaException(
                    KafkaError(KafkaError._MSG_TIMED_OUT, "the producer's queue stayed full")
                ) from None
            producer.poll(drain_s)


def output_producer_config(
    kafka: KafkaSettings, own: dict[str, Any] | None = None
) -> dict[str, Any]:
    """librdkafka settings of a producer of the worker's outputs (and of the ceiling baseline,
    which must keep the same guarantees): idempotent, acknowledged by every in-sync replica,
    lz4-compressed, lingering ``output_linger_ms``; then the producer's ``own`` choices (the
    passed-through properties still win over both)."""
    return kafka.client_config(
        {
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": kafka.output_linger_ms,
            "compression.type": "lz4",
            **(own or {}),
        }
    )


class Publisher(Protocol):
    """Where services send their outputs: ``publish`` returns once every record is
    acknowledged, or raises ``PublishError`` with those that were not (``KafkaPublisher``)."""

    async def publish(self, records: Sequence[Record]) -> None: ...


class PublishError(StreamAppError):
    """Some records were not delivered; ``failed`` holds them to publish again."""

    def __init__(self, failed: list[Record], errors: list[str]) -> None:
        super().__init__(f"{len(failed)} records not delivered: {errors[:3]}")
        self.failed = failed


class KafkaPublisher:
    """One idempotent producer for a worker's outputs.

    A fatal producer error (the idempotent producer's sequence broken, fenced) and any error
    on the delivery thread end the worker (``crash``): without them nothing would ever be
    acknowledged again, and the worker would wait forever while looking alive.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        client_id: str,
        crash: Crash = crash_without_commit,
    ) -> None:
        self._crash = crash
        self._producer = Producer(
            output_producer_config(
                kafka,
                {
                    "client.id": client_id,
                    "queue.buffering.max.messages": 1_000_000,
                    "log_level": 4,
                    "error_cb": self._on_error,
                },
            )
        )
        self._running = True
        self._poller = threading.Thread(target=self._poll, name="kafka-deliveries", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while self._running:
            try:
                self._producer.poll(0.05)
            except Exception as exc:
                if self._running:
                    self._crash(f"serving Kafka delivery reports failed: {exc!r}")
                return

    def _on_error(self, error: Any) -> None:
        """librdkafka's error callback (delivery thread): fatal errors end the worker."""
        if error.fatal():
            self._crash(f"the Kafka producer failed fatally: {error}")
        else:
            log.debug("Kafka producer: %s", error)  # librdkafka logs it too

    async def publish(self, records: Sequence[Record]) -> None:
        """Send every record; return when all are acknowledged, or raise ``PublishError``."""
        if not records:
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        pending = [len(records)]
        failed: list[Record] = []
        errors: list[str] = []

        def delivered(err: Any, message: Any) -> None:  # on the poller thread
            if err is not None:
                headers = message.headers()
                failed.append(Record(message.topic(), message.key(), message.value(),
                                     tuple(headers) if headers else NO_HEADERS))  # fmt: skip
                errors.append(str(err))
            pending[0] -= 1
            if pending[0] == 0:
                loop.call_soon_threadsafe(_set_done, done)

        produce = self._producer.produce
        for topic, key, value, headers in records:
            while True:
                try:
                    if headers:
                        produce(topic, value, key, on_delivery=delivered, headers=list(headers))
                    else:
                        produce(topic, value, key, on_delivery=delivered)
                    break
                except BufferError:  # librdkafka's queue is full: let it drain
                    await asyncio.sleep(0.005)
        await done
        if failed:
            raise PublishError(failed, errors)

    def reachable(self, timeout_s: float = 2.0) -> None:
        """Raise ``KafkaException`` unless a broker answers a metadata request in time
        (blocking: readiness runs it on a thread)."""
        self._producer.list_topics(timeout=timeout_s)

    def close(self, timeout_s: float = 30.0) -> int:
        """Deliver what is queued, stop the delivery thread; returns records left undelivered."""
        remaining: int = self._producer.flush(timeout_s)
        self._running = False
        self._poller.join(timeout=5)
        return remaining


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
