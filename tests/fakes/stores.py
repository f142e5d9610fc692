"""In-memory twins of the project's storage and output interfaces, for unit tests of the
services: the stores keep what they were given, can be told to fail or to hold their next
acknowledgement until a test lets it go, and say what happened.

Each implements a Protocol of the product (``PredictionWriter``, ``LabelStorage``,
``PaneStorage``, ``FeatureReader``, ``Publisher``, ``RegistryReader``); the Cassandra and Kafka
implementations are proved against the real servers by the integration tests.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stream_app.errors import ModelNotFound
from stream_app.features.panes import PaneKey, PaneState
from stream_app.features.vector import StoredFeature
from stream_app.kafka.producer import PublishError
from stream_app.messages import Record
from stream_app.models.registry import ModelVersion, RoleAssignment
from stream_app.storage.labels import Label, StoredPrediction
from stream_app.storage.predictions import PredictionRow, feature_set_id


class Gate:
    """Failures to raise on the next calls, and an optional hold before acknowledging."""

    def __init__(self) -> None:
        self.failures: list[BaseException] = []
        self.held: asyncio.Event | None = None
        self.calls = 0

    def hold(self) -> asyncio.Event:
        """The next calls wait until the returned event is set."""
        self.held = asyncio.Event()
        return self.held

    async def pass_through(self) -> None:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        if self.held is not None:
            await self.held.wait()


@dataclass
class MemoryPredictions:
    """``PredictionWriter``: rows kept in order of acknowledgement."""

    rows: list[PredictionRow] = field(default_factory=list)
    feature_sets: dict[str, list[str]] = field(default_factory=dict)
    gate: Gate = field(default_factory=Gate)

    def register_feature_set(self, names: Sequence[str]) -> str:
        set_id = feature_set_id(names)
        self.feature_sets[set_id] = list(names)
        return set_id

    async def write_async(self, rows: Sequence[PredictionRow]) -> None:
        await self.gate.pass_through()
        self.rows.extend(rows)


@dataclass
class RecordingPublisher:
    """``Publisher``: acknowledged records kept in order; ``refuse_next`` fails some records
    of the next calls (as librdkafka reports undelivered ones)."""

    records: list[Record] = field(default_factory=list)
    refuse_next: list[int] = field(default_factory=list)  # records to fail, per next call
    gate: Gate = field(default_factory=Gate)
    attempts: int = 0

    async def publish(self, records: Sequence[Record]) -> None:
        if not records:
            return
        self.attempts += 1
        await self.gate.pass_through()
        if self.refuse_next:
            count = self.refuse_next.pop(0)
            failed, sent = list(records[:count]), list(records[count:])
            self.records.extend(sent)
            raise PublishError(failed, ["Local: Message timed out"] * len(failed))
        self.records.extend(records)

    def on(self, topic: str) -> list[Record]:
        return [r for r in self.records if r.topic == topic]


@dataclass
class MemoryFeatures:
    """``FeatureReader`` (and a ``read_at``): the stored features of entities."""

    features: dict[tuple[str, str], dict[str, StoredFeature]] = field(default_factory=dict)
    reads: list[tuple[list[tuple[str, str]], int | None]] = field(default_factory=list)

    async def get_many(
        self, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], dict[str, StoredFeature]]:
        wanted = list(dict.fromkeys(keys))
        self.reads.append((wanted, None))
        return {key: dict(self.features.get(key, {})) for key in wanted}

    async def read_at(
        self, keys: list[tuple[str, str]], at_ms: int
    ) -> dict[tuple[str, str], dict[str, StoredFeature]]:
        self.reads.append((list(dict.fromkeys(keys)), at_ms))
        return {key: dict(self.features.get(key, {})) for key in dict.fromkeys(keys)}


@dataclass
class MemoryLabels:
    """``LabelStorage``: labels, the predictions of events, and labels waiting."""

    labels: dict[str, Label] = field(default_factory=dict)
    predictions: dict[str, list[StoredPrediction]] = field(default_factory=dict)
    waiting_labels: dict[str, Label] = field(default_factory=dict)
    finished: list[str] = field(default_factory=list)
    gate: Gate = field(default_factory=Gate)

    async def store(self, labels: Sequence[Label]) -> None:
        await self.gate.pass_through()
        self.labels.update({label.event_id: label for label in labels})

    async def predictions_of(self, event_ids: Iterable[str]) -> dict[str, list[StoredPrediction]]:
        return {e: list(self.predictions[e]) for e in event_ids if e in self.predictions}

    async def wait(self, labels: Sequence[Label]) -> None:
        self.waiting_labels.update({label.event_id: label for label in labels})

    async def done(self, labels: Sequence[Label]) -> None:
        for label in labels:
            self.waiting_labels.pop(label.event_id, None)
            self.finished.append(label.event_id)

    async def waiting(self, partition: int, since_ms: int) -> list[Label]:
        await self.gate.pass_through()
        return [
            label for label in self.waiting_labels.values()
            if label.partition == partition and label.received_at >= since_ms
        ]  # fmt: skip


@dataclass
class MemoryPanes:
    """``PaneStorage``: panes and watermarks; a snapshot copies the states it is given."""

    panes: dict[PaneKey, PaneState] = field(default_factory=dict)
    watermarks: dict[int, int] = field(default_factory=dict)
    source_topic_id: str = "topic-1"
    writes: int = 0
    gate: Gate = field(default_factory=Gate)

    async def load(self, keys: Iterable[PaneKey]) -> dict[PaneKey, PaneState]:
        return {k: copy.deepcopy(self.panes[k]) for k in keys if k in self.panes}

    def snapshot(self, dirty: Iterable[tuple[PaneKey, PaneState]]) -> Sequence[Any]:
        return [(key, copy.deepcopy(state)) for key, state in dirty]

    async def write(self, snapshot: Sequence[Any]) -> None:
        await self.gate.pass_through()
        self.writes += 1
        for key, state in snapshot:
            self.panes[key] = state

    async def load_watermarks(self, partitions: Iterable[int]) -> dict[int, int]:
        return {p: self.watermarks[p] for p in partitions if p in self.watermarks}

    async def write_watermarks(self, watermarks: Mapping[int, int]) -> None:
        self.watermarks.update(watermarks)


@dataclass
class MemoryRegistry:
    """``RegistryReader``: versions (with their model text) and roles."""

    use_case: str
    versions: dict[str, tuple[ModelVersion, str]] = field(default_factory=dict)
    assigned: dict[str, RoleAssignment] = field(default_factory=dict)
    losses: dict[str, dict[str, str]] = field(default_factory=dict)

    def add(self, model: ModelVersion, text: str, role: str | None = None,
            traffic: float | None = None,
            loss_models: dict[str, str] | None = None) -> None:  # fmt: skip
        self.versions[model.version] = (model, text)
        self.losses[model.version] = dict(loss_models or {})
        if role is not None:
            self.assigned[role] = RoleAssignment(role, model.version, traffic, 0, "test")

    def roles(self) -> dict[str, RoleAssignment]:
        return dict(self.assigned)

    def get(self, version: str) -> ModelVersion:
        if version not in self.versions:
            raise ModelNotFound(f"no version {version}")
        return self.versions[version][0]

    def artifact(self, version: str) -> str:
        return self.versions[version][1]

    def loss_models(self, version: str) -> dict[str, str]:
        return self.losses.get(version, {})

    def champion(self) -> RoleAssignment:
        if "champion" not in self.assigned:
            raise ModelNotFound(f"no champion model for use case {self.use_case}")
        return self.assigned["champion"]
