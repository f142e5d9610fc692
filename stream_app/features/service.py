"""The feature service: one batch of sensor readings in, updated panes in Cassandra out.

Per batch: decode (invalid -> dead-letter), load from Cassandra the panes the batch touches
that are not in memory, merge the readings in offset order (late ones counted, re-read ones
skipped), then write each changed pane once, with its entity's other panes in one
single-partition batch. ``process`` returns when Cassandra and Kafka acknowledged, so offsets
move only after that.

Batches may be in flight together: loading and merging run one batch at a time in arrival
order (a lock), the writes are bound right after merging with increasing write timestamps,
so the state merged last is the one Cassandra keeps.

Each partition's watermark decides which readings are late. It is stored after a batch's
panes, and after every earlier batch's, are written, so the stored watermark never runs ahead
of the panes. A worker that takes a partition over loads it before merging. It then drops
exactly the readings the previous owner dropped: without it, a restarted worker would begin
with no watermark and merge a reading its predecessor had refused as late.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from stream_app.contracts.dead_letter import dead_letters
from stream_app.contracts.decode import SensorReading, decode_sensor_reading
from stream_app.errors import FeatureLookupError, InvalidEvent
from stream_app.features.pane_store import PaneStorage
from stream_app.features.panes import PaneAggregator, aggregate_groups
from stream_app.kafka.producer import Publisher
from stream_app.kafka.schema_registry import RegistrySchemas
from stream_app.messages import InputMessage, Refused
from stream_app.monitoring.prometheus import WorkerMetrics
from stream_app.monitoring.state import Monitor
from stream_app.retry import retry_forever
from stream_app.settings import Settings
from stream_app.storage.cql import worth_retrying
from stream_app.use_cases.spec import UseCase


@dataclass
class FeatureBatchResult:
    readings: int = 0
    merged: int = 0
    late: int = 0
    duplicates: int = 0
    panes_written: int = 0
    dead_letters: int = 0


T = TypeVar("T")


def _retryable(exc: BaseException) -> bool:
    return worth_retrying(exc) or isinstance(exc, FeatureLookupError)


class FeatureService:
    """Maintains the windowed aggregates of one use case from its sensor readings."""

    def __init__(
        self,
        *,
        settings: Settings,
        use_case: UseCase,
        panes: PaneStorage,
        publisher: Publisher,
        metrics: WorkerMetrics,
        monitor: Monitor,
        agent: str = "features",
        schemas: RegistrySchemas | None = None,
    ) -> None:
        self.settings = settings
        self.use_case = use_case
        self.panes = panes
        self.publisher = publisher
        self.metrics = metrics
        self.monitor = monitor
        self.agent = agent
        self.aggregator = PaneAggregator(aggregate_groups(use_case))
        self.reader = (schemas or RegistrySchemas(settings.schema_registry)).reader(
            "sensor_readings"
        )
        self._merge_lock = asyncio.Lock()
        self._owned: set[int] = set()  # partitions whose stored watermark is loaded
        self._previous_marks: asyncio.Future[None] | None = None  # the last batch's mark write

    async def process(self, messages: Sequence[InputMessage]) -> FeatureBatchResult:
        topic = self.settings.kafka.topics.sensor_readings
        result = FeatureBatchResult(readings=len(messages))
        readings: list[tuple[InputMessage, SensorReading]] = []
        refused: list[Refused] = []
        if self.reader.framed:  # the registry's answer for ids not seen yet
            await self.reader.prepare([m.value for m in messages])
        max_bytes = self.settings.worker.max_message_bytes
        for message in messages:
            try:
                reading = decode_sensor_reading(message.value, max_bytes, self.reader.parse)
                readings.append((message, reading))
            except InvalidEvent as error:
                refused.append(Refused(message, error))
        partitions = {message.partition for message in messages}
        async with self._merge_lock:
            await self._take_over(partitions - self._owned)
            unknown = self.aggregator.unknown_panes((m.partition, r) for m, r in readings)
            unknown = {key for key in unknown if not self.aggregator.is_late(key)}
            stored = await self._until_done(
                lambda: self.panes.load(unknown), "loading panes", "pane_load"
            )
            self.aggregator.load(unknown, stored)
            for message, reading in readings:
                applied = self.aggregator.apply(message.partition, message.offset, reading)
                result.merged += applied.merged
                result.late += applied.late
                result.duplicates += applied.duplicates
            dirty = self.aggregator.take_dirty()
            statements = self.panes.snapshot(dirty)
            self.aggregator.evict_closed()
            marks = {
                partition: self.aggregator.watermarks[partition]
                for partition in partitions
                if partition in self.aggregator.watermarks
            }
            previous = self._previous_marks
            self._previous_marks = asyncio.get_running_loop().create_future()
            written = self._previous_marks
        result.panes_written = len(dirty)
        payloads, records = dead_letters(
            refused, self.settings.kafka.topics.dead_letter, self.agent, int(time.time() * 1000)
        )
        result.dead_letters = len(records)
        for payload in payloads:
            self.monitor.dead_letter(payload)
        self.monitor.count(topic, len(messages))
        try:
            await asyncio.gather(self._write(statements), self.publisher.publish(records))
            if previous is not None:
                await asyncio.shield(previous)  # earlier batches' panes are written
            await self._write_marks(marks)
        finally:
            if not written.done():
                written.set_result(None)
        self._observe(topic, result, refused)
        return result

    async def _take_over(self, partitions: set[int]) -> None:
        """Start newly owned partitions from their stored watermarks."""
        if not partitions:
            return
        stored = await self._until_done(
            lambda: self.panes.load_watermarks(partitions), "loading watermarks", "watermark_load"
        )
        for partition, mark in stored.items():
            current = self.aggregator.watermarks.get(partition, mark)
            self.aggregator.watermarks[partition] = max(current, mark)
        self._owned |= partitions

    async def _until_done(self, action: Callable[[], Awaitable[T]], what: str, label: str) -> T:
        """``action`` retried with back-off while Cassandra is slow or away (counted)."""
        return await retry_forever(
            action,
            _retryable,
            what,
            self.settings.consumer.retry_initial_s,
            self.settings.consumer.retry_max_s,
            lambda exc, attempt: self.metrics.retried(label),
        )

    async def _write_marks(self, marks: dict[int, int]) -> None:
        if marks:
            await self._until_done(
                lambda: self.panes.write_watermarks(marks), "writing watermarks", "watermark_write"
            )

    async def _write(self, statements: Sequence[Any]) -> None:
        if statements:
            await self._until_done(
                lambda: self.panes.write(statements), "writing panes", "pane_write"
            )

    def on_partitions_revoked(self, partitions: list[int]) -> None:
        """Another worker takes these partitions: forget their in-memory panes and
        watermarks (loaded again if they come back)."""
        self.aggregator.drop_partitions(partitions)
        self._owned -= set(partitions)

    def _observe(self, topic: str, result: FeatureBatchResult, refused: list[Refused]) -> None:
        m = self.metrics
        m.events_in.labels(topic).inc(result.readings)
        m.readings_merged.inc(result.merged)
        m.late_readings.inc(result.late)
        m.duplicate_readings.inc(result.duplicates)
        m.panes_written.inc(result.panes_written)
        for r in refused:
            m.dead_letters.labels(r.message.topic, r.error.code).inc()
        if refused:
            m.events_out.labels(self.settings.kafka.topics.dead_letter).inc(len(refused))
            self.monitor.count(self.settings.kafka.topics.dead_letter, len(refused))
