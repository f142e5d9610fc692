"""A simulated world built from a use case's ``[simulation]`` section.

The world draws its entities' hidden attributes once from the seed, then generates batches of
client events (with their true labels and label delays) and sensor readings, vectorised with
numpy. The same seed always gives the same world, so a model trained on ``--history`` is
scored on live events from the same population.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stream_app.errors import NoSimulation
from stream_app.use_cases.expressions import Expression, Scope
from stream_app.use_cases.spec import Simulation, UseCase

DAY_MS = 86_400_000
HOUR_MS = 3_600_000

Array = np.ndarray[Any, Any]


def clock_variables(times_ms: Array) -> dict[str, Array]:
    """``hour_of_day`` (0-24, UTC) and ``day_of_week`` (0 = Monday) of each time."""
    return {
        "hour_of_day": (times_ms % DAY_MS) / HOUR_MS,
        "day_of_week": ((times_ms // DAY_MS + 3) % 7).astype(np.float64),
    }


def entity_ids(key: str, count: int) -> list[str]:
    """Ids of the simulated entities of one key: courier_id -> courier-0 ... courier-299."""
    prefix = key.removesuffix("_id")
    return [f"{prefix}-{i}" for i in range(count)]


@dataclass
class EventBatch:
    """Client events generated together; row i of every array is event i."""

    times_ms: Array
    entities: dict[str, Array]  # entity key -> index into the population
    fields: dict[str, Array]
    labels: Array
    label_delays_ms: Array
    labelled: Array  # bool: whether ground truth will ever come
    drifted: bool

    def __len__(self) -> int:
        return len(self.times_ms)


@dataclass
class ReadingBatch:
    """Sensor readings generated together."""

    times_ms: Array
    entities: dict[str, Array]
    values: dict[str, Array] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.times_ms)


class World:
    """The entities of a use case and the rules that produce their events."""

    def __init__(self, use_case: UseCase, seed: int) -> None:
        if use_case.simulation is None:
            raise NoSimulation(use_case.name, use_case.name, "simulate")
        self.use_case = use_case
        self.sim: Simulation = use_case.simulation
        self.seed = seed
        self.ids = {key: entity_ids(key, n) for key, n in self.sim.population.items()}
        self._derived = {n: Expression(s, f"derived.{n}") for n, s in self.sim.derived.items()}
        drift = self.sim.drift
        self._drifted_derived = {
            **self._derived,
            **{n: Expression(s, f"drift.derived.{n}") for n, s in drift.derived.items()},
        }
        self._event = {n: Expression(s, f"event.{n}") for n, s in self.sim.event.items()}
        self._drifted_event = {
            **self._event,
            **{n: Expression(s, f"drift.event.{n}") for n, s in drift.event.items()},
        }
        self._reading = {n: Expression(s, f"reading.{n}") for n, s in self.sim.reading.items()}
        self._drifted_reading = {
            **self._reading,
            **{n: Expression(s, f"drift.reading.{n}") for n, s in drift.reading.items()},
        }
        self._label = Expression(self.sim.label, "label")
        self._drifted_label = Expression(drift.label or self.sim.label, "drift.label")
        self._label_delay = Expression(self.sim.label_delay_s, "label_delay_s")
        self.attributes = self._draw_attributes()
        self._events_rng = np.random.default_rng([seed, 2])
        self._readings_rng = np.random.default_rng([seed, 3])

    def _draw_attributes(self) -> dict[str, tuple[str, Array]]:
        rng = np.random.default_rng([self.seed, 0])
        drawn = {}
        for name, attribute in self.sim.attributes.items():
            rows = self.sim.population[attribute.entity]
            scope = Scope({}, {}, rng, rows)
            drawn[name] = (attribute.entity, scope.evaluate(Expression(attribute.value, name)))
        return drawn

    def _given(self, entities: dict[str, Array], times_ms: Array) -> dict[str, Array]:
        given = clock_variables(times_ms)
        for name, (entity, values) in self.attributes.items():
            if entity in entities:
                given[name] = values[entities[entity]]
        return given

    def pick_entities(
        self, keys: list[str], rows: int, rng: np.random.Generator
    ) -> dict[str, Array]:
        return {key: rng.integers(0, self.sim.population[key], rows) for key in keys}

    def client_events(
        self, times_ms: Array, drifted: bool = False, rng: np.random.Generator | None = None
    ) -> EventBatch:
        """Events at ``times_ms`` with their true outcome (before or after the drift)."""
        rng = rng or self._events_rng
        rows = len(times_ms)
        entities = self.pick_entities(self.use_case.entities.keys, rows, rng)
        derived = self._drifted_derived if drifted else self._derived
        scope = Scope(self._given(entities, times_ms), derived, rng, rows)
        event = self._drifted_event if drifted else self._event
        fields = {name: scope.evaluate(expr) for name, expr in event.items()}
        scope = Scope({**self._given(entities, times_ms), **fields}, derived, rng, rows)
        labels = scope.evaluate(self._drifted_label if drifted else self._label)
        delays = np.maximum(scope.evaluate(self._label_delay), 0.0) * 1000
        labelled = rng.random(rows) < self.sim.label_coverage
        return EventBatch(
            times_ms=times_ms.astype(np.int64),
            entities=entities,
            fields=fields,
            labels=labels,
            label_delays_ms=delays.astype(np.int64),
            labelled=labelled,
            drifted=drifted,
        )

    def readings(
        self,
        times_ms: Array,
        fixed: dict[str, Array] | None = None,
        rng: np.random.Generator | None = None,
        drifted: bool = False,
    ) -> ReadingBatch:
        """Readings at ``times_ms``; ``fixed`` pins some entity keys (others are random)."""
        rng = rng or self._readings_rng
        rows = len(times_ms)
        entities = self.pick_entities(self.sim.reading_entities, rows, rng)
        entities.update(fixed or {})
        derived = self._drifted_derived if drifted else self._derived
        scope = Scope(self._given(entities, times_ms), derived, rng, rows)
        reading = self._drifted_reading if drifted else self._reading
        values = {name: scope.evaluate(expr) for name, expr in reading.items()}
        return ReadingBatch(times_ms.astype(np.int64), entities, values)

    def batch_features(self) -> dict[str, tuple[str, Array]]:
        """Each batch feature's value per entity (as a nightly job would compute it)."""
        rng = np.random.default_rng([self.seed, 1])
        result = {}
        for name, source in self.sim.batch.items():
            entity = self.use_case.features[name].entity  # type: ignore[union-attr]
            rows = self.sim.population[entity]
            index = {entity: np.arange(rows)}
            scope = Scope(
                self._given(index, np.zeros(rows, dtype=np.int64)), self._derived, rng, rows
            )
            result[name] = (entity, scope.evaluate(Expression(source, f"batch.{name}")))
        return result
