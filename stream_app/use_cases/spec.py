"""The declarative use-case spec: one TOML file per use case, validated at load.

A spec names the entities a client event is about, the features a model uses (event fields,
windowed aggregates of sensor readings, batch-loaded features) in model column order, the label
and how ground truth joins, the task and its metrics, the missing-feature policy, and
optionally a ``[simulation]`` of a world that produces such events. The code reads these
files and never hard-codes a domain: a new use case is a new file.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from stream_app.bundled import bundled_path
from stream_app.errors import UseCaseError
from stream_app.timeparse import parse_duration_ms

_STRICT = ConfigDict(extra="forbid", frozen=True)
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

REGRESSION_METRICS = ("mae", "rmse", "mape", "within_tolerance")
BINARY_METRICS = ("accuracy", "log_loss", "auc", "calibration")
AGGREGATE_FUNCTIONS = ("count", "sum", "mean", "min", "max", "std", "last")


Duration = Annotated[str, Field(description="A duration: 500ms, 30s, 5m, 2h, 7d")]


def _check_duration(value: str) -> str:
    parse_duration_ms(value)
    return value


class Window(BaseModel):
    """An event-time window: tumbling (``size``) or hopping (``size`` every ``step``)."""

    model_config = _STRICT

    kind: Literal["tumbling", "hopping"]
    size: Duration
    step: Duration | None = None

    @field_validator("size", "step")
    @classmethod
    def _durations(cls, value: str | None) -> str | None:
        return value if value is None else _check_duration(value)

    @model_validator(mode="after")
    def _step_fits(self) -> Window:
        if self.kind == "tumbling" and self.step is not None:
            raise ValueError("a tumbling window has no step (its step is its size)")
        if self.kind == "hopping":
            if self.step is None:
                raise ValueError("a hopping window needs a step")
            if self.size_ms % self.step_ms != 0 or self.step_ms > self.size_ms:
                raise ValueError("a hopping window's size must be a multiple of its step")
        return self

    @property
    def size_ms(self) -> int:
        return parse_duration_ms(self.size)

    @property
    def step_ms(self) -> int:
        return parse_duration_ms(self.step) if self.step else self.size_ms


class _Feature(BaseModel):
    model_config = _STRICT

    default: float = Field(description="Value used when the feature is missing or too old.")
    unit: str = ""
    description: str = ""
    monitor_drift: bool = Field(
        True,
        description="Watch this feature for drift. Off for features whose distribution "
        "changes by design within a monitoring window (hour of day, day of week).",
    )


class EventFeature(_Feature):
    """A numeric field of the client event, used as it comes."""

    source: Literal["event"]
    field: str | None = Field(None, description="The event field, if named differently.")


class AggregateFeature(_Feature):
    """A windowed aggregate of one sensor-reading value, per entity, on event time."""

    source: Literal["aggregate"]
    entity: str
    reading: str = Field(description="The reading value aggregated (a key of `values`).")
    function: Literal["count", "sum", "mean", "min", "max", "std", "last"]
    window: Window
    allowed_lateness: Duration = "30s"

    @field_validator("allowed_lateness")
    @classmethod
    def _durations(cls, value: str | None) -> str | None:
        return value if value is None else _check_duration(value)


class BatchFeature(_Feature):
    """A feature loaded in batches (``stream-app features load``), per entity."""

    source: Literal["batch"]
    entity: str


Feature = Annotated[EventFeature | AggregateFeature | BatchFeature, Field(discriminator="source")]


class Entities(BaseModel):
    """The entity keys a client event carries; stored features are looked up by them."""

    model_config = _STRICT

    keys: list[str] = Field(min_length=1)
    split_key: str = Field(description="Key hashed for stable A/B and shadow traffic splits.")

    @model_validator(mode="after")
    def _split_key_known(self) -> Entities:
        if self.split_key not in self.keys:
            raise ValueError(f"split_key {self.split_key!r} is not one of keys {self.keys}")
        return self


class Label(BaseModel):
    """The outcome a model predicts, and how ground truth finds its prediction."""

    model_config = _STRICT

    name: str
    unit: str = ""
    join: Literal["event_id"] = Field(
        "event_id", description="Ground truth names the event_id of the event it labels."
    )
    max_delay: Duration = Field(description="After this, an unmatched label is counted, not kept.")
    tolerance: float | None = Field(
        None, gt=0, description="Regression: |error| within this (label unit) counts as correct."
    )
    threshold: float = Field(0.5, gt=0, lt=1, description="Binary: probability cut for class 1.")

    @field_validator("max_delay")
    @classmethod
    def _durations(cls, value: str | None) -> str | None:
        return value if value is None else _check_duration(value)


class MissingFeatures(BaseModel):
    """What happens when a stored feature is missing (unknown entity, timeout) or too old."""

    model_config = _STRICT

    policy: Literal["default", "dead_letter"] = Field(
        "default",
        description="default: use each feature's default and flag it on the prediction; "
        "dead_letter: refuse the event with code missing_features.",
    )
    max_age: Duration = Field("15m", description="Stored features older than this are missing.")

    @field_validator("max_age")
    @classmethod
    def _durations(cls, value: str | None) -> str | None:
        return value if value is None else _check_duration(value)


class Attribute(BaseModel):
    """A hidden property of each simulated entity, drawn once per entity."""

    model_config = _STRICT

    entity: str
    value: str = Field(description="Expression drawn per entity, e.g. uniform(14, 30).")


class Drift(BaseModel):
    """What changes in the simulated world from ``--drift-at`` on (expressions replaced)."""

    model_config = _STRICT

    label: str | None = Field(None, description="A new true outcome.")
    derived: dict[str, str] = Field({}, description="New helper variables.")
    event: dict[str, str] = Field({}, description="New client-event field formulas.")
    reading: dict[str, str] = Field({}, description="New sensor-reading value formulas.")


class Simulation(BaseModel):
    """A simulated world that produces this use case's events, readings and ground truth.

    Expressions (see ``stream_app/use_cases/expressions.py``) use entity attributes, the
    clock (``hour_of_day``, ``day_of_week``), event fields and ``derived`` variables.
    """

    model_config = _STRICT

    population: dict[str, int] = Field(description="How many entities of each key.")
    attributes: dict[str, Attribute] = {}
    derived: dict[str, str] = Field({}, description="Helper variables, in order.")
    event: dict[str, str] = Field(description="Client-event fields.")
    reading_entities: list[str] = Field(min_length=1)
    sensor_id: str = Field(description="Template of a reading's sensor id, e.g. gps-{courier_id}.")
    reading: dict[str, str] = Field(description="Values of one sensor reading.")
    reading_interval: Duration = Field(
        "60s", description="History: mean time between two readings of one entity."
    )
    batch: dict[str, str] = Field({}, description="Batch features, per entity.")
    label: str = Field(description="The true outcome of an event.")
    label_delay_s: str = Field(description="Seconds from event to ground truth.")
    label_coverage: float = Field(1.0, gt=0, le=1, description="Share of events ever labelled.")
    drift: Drift = Field(default_factory=Drift, description="What --drift-at changes.")
    history_events_per_day: int = Field(20_000, ge=1)

    @field_validator("reading_interval")
    @classmethod
    def _durations(cls, value: str | None) -> str | None:
        return value if value is None else _check_duration(value)


class Serving(BaseModel):
    """How the scoring path reads stored features for an event."""

    model_config = _STRICT

    features_at: Literal["now", "event_time"] = Field(
        "now",
        description="now: windows as they stand when the event is scored (live traffic); "
        "event_time: point in time, as of the event's own time: the windows complete by then "
        "(up to one window step behind it) and the batch features loaded before it (a stream "
        "replayed from the past, or events scored long after they happened).",
    )


class UseCase(BaseModel):
    """One use case, as declared in its spec file."""

    model_config = _STRICT

    name: str
    description: str = ""
    topic_prefix: str | None = Field(
        None,
        description="Prefix of this use case's topic names and consumer groups (default: "
        "'<name>.', so use cases on one Kafka never share a topic; '' for the plain names).",
    )
    task: Literal["regression", "binary_classification"]
    metrics: list[str] = Field(min_length=1)
    entities: Entities
    label: Label
    missing_features: MissingFeatures = MissingFeatures()
    readings: dict[str, str] = Field({}, description="Sensor reading values and their units.")
    features: dict[str, Feature] = Field(min_length=1, description="In model column order.")
    serving: Serving = Serving()
    simulation: Simulation | None = None

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("must be lower_snake_case")
        return value

    @field_validator("topic_prefix")
    @classmethod
    def _topic_characters(cls, value: str | None) -> str | None:
        if value and not re.fullmatch(r"[A-Za-z0-9._-]+", value):
            raise ValueError("may only use letters, digits, '.', '_' and '-' (Kafka's names)")
        return value

    @property
    def prefix(self) -> str:
        """The prefix of this use case's topics and consumer groups."""
        return f"{self.name}." if self.topic_prefix is None else self.topic_prefix

    @model_validator(mode="after")
    def _consistent(self) -> UseCase:
        allowed = REGRESSION_METRICS if self.task == "regression" else BINARY_METRICS
        if unknown := [m for m in self.metrics if m not in allowed]:
            raise ValueError(f"metrics {unknown} do not apply to {self.task}; use {allowed}")
        if self.task == "regression" and self.label.tolerance is None:
            raise ValueError("a regression use case needs label.tolerance")
        for name, feature in self.features.items():
            if not _NAME.match(name):
                raise ValueError(f"feature name {name!r} must be lower_snake_case")
            if (
                isinstance(feature, AggregateFeature | BatchFeature)
                and feature.entity not in self.entities.keys
            ):
                raise ValueError(
                    f"feature {name}: entity {feature.entity!r} is not one of "
                    f"entities.keys {self.entities.keys}"
                )
            if isinstance(feature, AggregateFeature) and feature.reading not in self.readings:
                raise ValueError(
                    f"feature {name}: reading {feature.reading!r} is not declared in [readings]"
                )
        if self.simulation is not None:
            self._check_simulation(self.simulation)
        return self

    def _check_simulation(self, sim: Simulation) -> None:
        if missing := [k for k in self.entities.keys if k not in sim.population]:
            raise ValueError(f"simulation.population lacks {missing}")
        for name, attribute in sim.attributes.items():
            if attribute.entity not in sim.population:
                raise ValueError(f"simulation.attributes.{name}: unknown entity")
        if unknown := [k for k in sim.reading_entities if k not in sim.population]:
            raise ValueError(f"simulation.reading_entities {unknown} have no population")
        wanted = {f.field or n for n, f in self.features.items() if isinstance(f, EventFeature)}
        if missing := sorted(wanted - set(sim.event)):
            raise ValueError(f"simulation.event does not produce event features {missing}")
        if missing := sorted(set(self.readings) - set(sim.reading)):
            raise ValueError(f"simulation.reading does not produce readings {missing}")
        batch = {n for n, f in self.features.items() if isinstance(f, BatchFeature)}
        if missing := sorted(batch - set(sim.batch)):
            raise ValueError(f"simulation.batch does not produce batch features {missing}")
        for section, known in (
            ("derived", sim.derived), ("event", sim.event), ("reading", sim.reading),
        ):  # fmt: skip
            if unknown := sorted(set(getattr(sim.drift, section)) - set(known)):
                raise ValueError(f"simulation.drift.{section} names unknown {section}: {unknown}")

    @property
    def feature_names(self) -> list[str]:
        """Every feature, in model column order."""
        return list(self.features)

    def features_of(self, kind: type[_Feature]) -> dict[str, Any]:
        """The features of one source kind, by name, in order."""
        return {n: f for n, f in self.features.items() if isinstance(f, kind)}


def _spec_file(name_or_path: str, folder: Path | None) -> Path:
    path = Path(name_or_path)
    if path.suffix == ".toml":
        return path
    return (folder or bundled_path("use_cases")) / f"{name_or_path}.toml"


def available_use_cases(folder: Path | None = None) -> list[str]:
    """The names of the use cases shipped (or in ``folder``)."""
    return sorted(p.stem for p in (folder or bundled_path("use_cases")).glob("*.toml"))


def load_use_case(name_or_path: str, folder: Path | None = None) -> UseCase:
    """A use case by shipped name (``delivery_eta``) or by path to its ``.toml`` file."""
    path = _spec_file(name_or_path, folder)
    if not path.exists():
        shipped = ", ".join(available_use_cases(folder)) or "none"
        raise UseCaseError(
            f"no use case {name_or_path!r} ({path} does not exist; shipped: {shipped})"
        )
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UseCaseError(f"{path}: not valid TOML: {exc}") from exc
    try:
        use_case = UseCase.model_validate(data)
    except ValidationError as exc:
        problems = "\n".join(
            f"  {'.'.join(str(p) for p in error['loc']) or '(top level)'}: {error['msg']}"
            for error in exc.errors()
        )
        raise UseCaseError(f"{path} is not a valid use case spec:\n{problems}") from None
    if use_case.simulation is not None:
        from stream_app.use_cases.expressions import check_simulation_expressions

        check_simulation_expressions(use_case, path)
    return use_case
