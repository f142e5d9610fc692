"""A frozen consumer on the real Kafka fails the liveness check; an idle one does not.

The worker's batch consumer reads a real topic; its service freezes on the first batch (as the
scoring consumer did in acceptance, alive but never finishing), while more events arrive. The
watchdog behind `/healthz` must call it stalled after `stall_after_s`, name it, and set the
gauge; once the service moves again, it is healthy.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from confluent_kafka import Producer
from prometheus_client import CollectorRegistry

from stream_app.kafka.consumer import BatchConsumer, BatchOptions, consumer_config
from stream_app.messages import InputMessage
from stream_app.monitoring.liveness import Watchdog
from stream_app.monitoring.prometheus import WorkerGauges
from stream_app.settings import Settings

STALL_AFTER_S = 2.0


class Frozen:
    """A service that does not return from its first batch until released."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.batches = 0

    async def process(self, messages: Sequence[InputMessage]) -> int:
        self.batches += 1
        await self.release.wait()
        return len(messages)


def produce(settings: Settings, topic: str, count: int) -> None:
    producer = Producer(settings.kafka.client_config())
    for i in range(count):
        producer.produce(topic, b"{}", f"k{i}".encode())
    producer.flush(30)


async def until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def test_a_frozen_consumer_with_work_waiting_fails_liveness(
    live_settings: Settings, scratch_topics: Callable[..., str], tag: str
) -> None:
    topic = scratch_topics("liveness", partitions=1)
    gauges = WorkerGauges(CollectorRegistry())
    watchdog = Watchdog(STALL_AFTER_S, lambda: None, gauges)

    async def scenario() -> None:
        service = Frozen()
        options = BatchOptions(batch_size=10, batches_in_flight=1, batch_wait_s=0.05,
                               commit_interval_s=0.1)  # fmt: skip
        config = consumer_config(live_settings.kafka, f"test-liveness-{tag}", 10)
        consumer = BatchConsumer(config, service, topic=topic, options=options)
        watchdog.watch(consumer.progress)
        await consumer.start()
        try:
            await until(lambda: consumer.last_poll is not None, 30, "the first poll")
            await asyncio.sleep(STALL_AFTER_S + 0.5)
            assert watchdog.health()[0], "an idle consumer is alive"

            produce(live_settings, topic, 50)  # the first batch freezes, the rest waits
            await until(lambda: service.batches == 1, 30, "the first batch")
            await until(lambda: not watchdog.health()[0], 3 * STALL_AFTER_S + 10, "a stall")
            _, body = watchdog.health()
            assert body["status"] == "stalled"
            [verdict] = body["consumers"]
            assert verdict["topic"] == topic
            assert verdict["stalled"] is True
            assert "no batch finished" in verdict["reason"]
            assert gauges.consumer_stalled.labels(topic, config["group.id"])._value.get() == 1

            service.release.set()  # it moves again: healthy once a batch finished
            await until(lambda: watchdog.health()[0], 30, "recovery")
            await until(lambda: service.batches >= 5, 30, "the rest of the events")
        finally:
            service.release.set()
            await consumer.stop()

    asyncio.run(scenario())
