"""Rows of a team's own files as the typed events the live worker decodes, or why not.

A history file has one row per past client event: its id and time, its entity ids, its event
fields and its label (with, optionally, the time the label became known). A readings file has
one row per past sensor reading: its time, the entity ids it is about and its values. Each row
becomes the same ``ClientEvent``, ``GroundTruth`` or ``SensorReading`` the worker decodes from
Kafka, checked by the same rules; a row that cannot be used is refused with a reason (its code
first, as on the dead-letter topic) and its line.

Columns are named as the spec names things (``event_id``, ``event_time``, the entity keys, the
event fields, the label's name, ``label_time``; for readings ``event_time``, the entity keys,
the reading names and optionally ``sensor_id``); ``ColumnMap`` renames them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal

from stream_app.contracts import codes
from stream_app.contracts.decode import (
    MAX_ID_LENGTH,
    MAX_TIME_MS,
    MIN_TIME_MS,
    ClientEvent,
    GroundTruth,
    SensorReading,
)
from stream_app.errors import ConfigurationError
from stream_app.use_cases.spec import AggregateFeature, BatchFeature, EventFeature, UseCase

TimeUnit = Literal["ms", "s"]
TRUE, FALSE = {"true", "yes"}, {"false", "no"}


@dataclass(frozen=True)
class ColumnMap:
    """Which column holds what (by the spec's names); ``renamed`` maps a name to a column."""

    renamed: Mapping[str, str] = field(default_factory=dict)

    def __call__(self, name: str) -> str:
        return self.renamed.get(name, name)

    @classmethod
    def parse(cls, pairs: Sequence[str], known: Sequence[str]) -> ColumnMap:
        """``NAME=COLUMN`` pairs (``--column``), each NAME one of ``known``."""
        renamed = {}
        for pair in pairs:
            name, sep, column = pair.partition("=")
            if not sep or not name or not column:
                raise ConfigurationError(f"--column {pair!r}: expected NAME=COLUMN")
            if name not in known:
                raise ConfigurationError(
                    f"--column {pair!r}: {name!r} is not one of {', '.join(known)}"
                )
            renamed[name] = column
        return cls(renamed)


def event_names(use_case: UseCase) -> list[str]:
    """What a history row holds, by the spec's names (the targets of ``--column``)."""
    fields = [f.field or n for n, f in use_case.features_of(EventFeature).items()]
    return ["event_id", "event_time", *use_case.entities.keys, *fields, use_case.label.name,
            "label_time"]  # fmt: skip


def reading_names(use_case: UseCase) -> list[str]:
    """What a readings row holds, by the spec's names."""
    return ["event_time", "sensor_id", *reading_entity_keys(use_case), *use_case.readings]


def reading_entity_keys(use_case: UseCase) -> list[str]:
    """The entity keys aggregate features group readings by."""
    keys = {f.entity for f in use_case.features_of(AggregateFeature).values()}
    return [k for k in use_case.entities.keys if k in keys]


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def parse_time(value: Any, unit: TimeUnit, name: str) -> int | str:
    """Milliseconds since the epoch (UTC), or a reason. Numbers are epoch ``unit``; strings
    ISO 8601 (no zone: UTC); dates and datetimes as they are (Parquet timestamps)."""
    if _blank(value):
        return f"{codes.MISSING_FIELD}: {name} is empty"
    try:
        if isinstance(value, datetime):
            moment = value if value.tzinfo else value.replace(tzinfo=UTC)
            ms = int(moment.timestamp() * 1000)
        elif isinstance(value, date):
            ms = int(datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp() * 1000)
        elif isinstance(value, bool):
            return f"{codes.WRONG_TYPE}: {name}={value!r} is not a time"
        elif isinstance(value, int | float) or _numeric(value):
            number = float(value)
            if not math.isfinite(number):
                return f"{codes.NON_FINITE_NUMBER}: {name}={value!r}"
            ms = round(number * (1000 if unit == "s" else 1))
        else:
            text = str(value).strip()
            moment = datetime.fromisoformat(text)
            moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
            ms = int(moment.timestamp() * 1000)
    except (ValueError, OverflowError):
        return f"{codes.INVALID_VALUE}: {name}={value!r} is not a time (ISO 8601 or epoch {unit})"
    if not MIN_TIME_MS <= ms < MAX_TIME_MS:
        hint = " (seconds? pass --time-unit s)" if unit == "ms" else ""
        return f"{codes.INVALID_VALUE}: {name}={value!r} is outside 2000-2100{hint}"
    return ms


def _numeric(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        float(value)
    except ValueError:
        return False
    return True


def parse_number(value: Any, name: str) -> float | str | None:
    """A number (booleans and true/false count 1/0), None when empty, or a reason."""
    if _blank(value):
        return None
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value.strip().lower() in TRUE | FALSE:
        return 1.0 if value.strip().lower() in TRUE else 0.0
    try:
        number = float(value)
    except (TypeError, ValueError):
        return f"{codes.WRONG_TYPE}: {name}={value!r} is not a number"
    if not math.isfinite(number):
        return f"{codes.NON_FINITE_NUMBER}: {name}={value!r}"
    return number


def parse_id(value: Any, name: str, code: str = codes.MISSING_FIELD) -> str:
    """An id (ids are text, whatever the file's type), or raise ``ValueError(reason)``."""
    if _blank(value):
        raise ValueError(f"{code}: {name} is empty")
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a numeric id column read as floats
    text = str(value).strip()
    if len(text) > MAX_ID_LENGTH:
        raise ValueError(f"{codes.INVALID_VALUE}: {name} is longer than {MAX_ID_LENGTH}")
    return text


@dataclass(frozen=True)
class LabelledEvent:
    """A past client event and its label."""

    event: ClientEvent
    label: GroundTruth | None  # None: the row has no label (scored, not learned from)


class EventRows:
    """Turns history rows into labelled events for one use case."""

    def __init__(self, use_case: UseCase, columns: ColumnMap, time_unit: TimeUnit) -> None:
        self.use_case = use_case
        self.columns = columns
        self.time_unit = time_unit
        self.fields = [f.field or n for n, f in use_case.features_of(EventFeature).items()]
        entity_features = {**use_case.features_of(AggregateFeature),
                           **use_case.features_of(BatchFeature)}  # fmt: skip
        needed = {f.entity for f in entity_features.values()} | {use_case.entities.split_key}
        self.required_entities = [k for k in use_case.entities.keys if k in needed]
        self.binary = use_case.task == "binary_classification"

    def check_columns(self, present: Sequence[str]) -> None:
        """Refuse a file that lacks a column every row needs, naming it."""
        c = self.columns
        required = ["event_id", "event_time", *self.required_entities]
        missing = [f"{n} (column {c(n)!r})" if c(n) != n else n
                   for n in required if c(n) not in present]  # fmt: skip
        if missing:
            raise ConfigurationError(
                f"the history file lacks {', '.join(missing)}; its columns are "
                f"{', '.join(present)} (rename with --column NAME=COLUMN)"
            )

    def parse(self, row: Mapping[str, Any]) -> LabelledEvent | str:
        c = self.columns
        try:
            event_id = parse_id(row.get(c("event_id")), "event_id")
            entities = {}
            for key in self.use_case.entities.keys:
                code = codes.MISSING_ENTITY if key in self.required_entities else ""
                if key in self.required_entities or not _blank(row.get(c(key))):
                    entities[key] = parse_id(row.get(c(key)), key, code or codes.MISSING_FIELD)
        except ValueError as refusal:
            return str(refusal)
        event_time = parse_time(row.get(c("event_time")), self.time_unit, "event_time")
        if isinstance(event_time, str):
            return event_time
        fields: dict[str, float | int | bool | None] = {}
        for name in self.fields:
            value = parse_number(row.get(c(name)), name)
            if isinstance(value, str):
                return value
            fields[name] = value
        event = ClientEvent(event_id, event_time, entities, fields)
        label_name = self.use_case.label.name
        raw_label = row.get(c(label_name))
        label = parse_number(raw_label, label_name)
        if isinstance(label, str):
            return label
        if label is None:
            return LabelledEvent(event, None)
        if self.binary and not 0 <= label <= 1:
            return f"{codes.INVALID_VALUE}: {label_name}={raw_label!r} (binary labels are 0 or 1)"
        label_time = event_time  # unknown: as if known at once
        if not _blank(row.get(c("label_time"))):
            parsed = parse_time(row.get(c("label_time")), self.time_unit, "label_time")
            if isinstance(parsed, str):
                return parsed
            if parsed < event_time:
                return f"{codes.INVALID_VALUE}: label_time is before event_time"
            label_time = parsed
        return LabelledEvent(event, GroundTruth(event_id, label, label_time))


class ReadingRows:
    """Turns readings rows into sensor readings for one use case."""

    def __init__(self, use_case: UseCase, columns: ColumnMap, time_unit: TimeUnit) -> None:
        self.use_case = use_case
        self.columns = columns
        self.time_unit = time_unit
        self.entity_keys = reading_entity_keys(use_case)

    def check_columns(self, present: Sequence[str]) -> None:
        c = self.columns
        problems = []
        if c("event_time") not in present:
            problems.append("event_time")
        if not any(c(k) in present for k in self.entity_keys):
            problems.append(f"an entity column ({', '.join(self.entity_keys)})")
        if not any(c(r) in present for r in self.use_case.readings):
            problems.append(f"a reading column ({', '.join(self.use_case.readings)})")
        if problems:
            raise ConfigurationError(
                f"the readings file lacks {', '.join(problems)}; its columns are "
                f"{', '.join(present)} (rename with --readings-column NAME=COLUMN)"
            )

    def parse(self, row: Mapping[str, Any]) -> SensorReading | str:
        c = self.columns
        event_time = parse_time(row.get(c("event_time")), self.time_unit, "event_time")
        if isinstance(event_time, str):
            return event_time
        entities = {}
        try:
            for key in self.entity_keys:
                if not _blank(row.get(c(key))):
                    entities[key] = parse_id(row.get(c(key)), key)
        except ValueError as refusal:
            return str(refusal)
        if not entities:
            return f"{codes.MISSING_ENTITY}: no entity id ({', '.join(self.entity_keys)})"
        values = {}
        for name in self.use_case.readings:
            value = parse_number(row.get(c(name)), name)
            if isinstance(value, str):
                return value
            if value is not None:
                values[name] = value
        if not values:
            return f"{codes.MISSING_FIELD}: every reading value is empty"
        sensor = row.get(c("sensor_id"))
        sensor_id = "import" if _blank(sensor) else str(sensor).strip()[:MAX_ID_LENGTH]
        return SensorReading(sensor_id, event_time, entities, values)
