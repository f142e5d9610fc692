"""Simulated batches as Kafka records (key, value bytes), per the schemas in ``schemas/``."""

from __future__ import annotations

from collections.abc import Iterator

import orjson

from stream_app.contracts.decode import SensorReading
from stream_app.simulation.world import EventBatch, ReadingBatch, World

Record = tuple[bytes, bytes]


def client_event_records(world: World, events: EventBatch, event_ids: list[str]) -> list[Record]:
    """One client-event record per event, keyed by event id."""
    keys = list(events.entities)
    ids = [[world.ids[key][i] for i in events.entities[key].tolist()] for key in keys]
    names = list(events.fields)
    columns = [events.fields[name].tolist() for name in names]
    times = events.times_ms.tolist()
    records = []
    for row, event_id in enumerate(event_ids):
        payload = {
            "schema_version": 1,
            "event_id": event_id,
            "event_time": times[row],
            "entities": {key: ids[k][row] for k, key in enumerate(keys)},
            "fields": {name: columns[c][row] for c, name in enumerate(names)},
        }
        records.append((event_id.encode(), orjson.dumps(payload)))
    return records


def sensor_readings(world: World, readings: ReadingBatch) -> list[SensorReading]:
    """The batch as decoded readings (what the feature agent works on)."""
    keys = list(readings.entities)
    ids = [[world.ids[key][i] for i in readings.entities[key].tolist()] for key in keys]
    names = list(readings.values)
    columns = [readings.values[name].tolist() for name in names]
    template = world.sim.sensor_id
    result = []
    for row, time_ms in enumerate(readings.times_ms.tolist()):
        entities = {key: ids[k][row] for k, key in enumerate(keys)}
        values = {name: columns[c][row] for c, name in enumerate(names)}
        result.append(SensorReading(template.format(**entities), time_ms, entities, values))
    return result


def reading_records(world: World, readings: ReadingBatch) -> list[Record]:
    """One sensor-reading record per reading, keyed by sensor id."""
    keys = list(readings.entities)
    ids = [[world.ids[key][i] for i in readings.entities[key].tolist()] for key in keys]
    names = list(readings.values)
    columns = [readings.values[name].tolist() for name in names]
    template = world.sim.sensor_id
    records = []
    for row, time_ms in enumerate(readings.times_ms.tolist()):
        entities = {key: ids[k][row] for k, key in enumerate(keys)}
        sensor_id = template.format(**entities)
        payload = {
            "schema_version": 1,
            "sensor_id": sensor_id,
            "event_time": time_ms,
            "entities": entities,
            "values": {name: columns[c][row] for c, name in enumerate(names)},
        }
        records.append((sensor_id.encode(), orjson.dumps(payload)))
    return records


def ground_truth_records(
    event_ids: list[str], labels: list[float], label_times: list[int]
) -> Iterator[Record]:
    """Ground-truth records keyed by the event id they label."""
    for event_id, label, label_time in zip(event_ids, labels, label_times, strict=True):
        payload = {
            "schema_version": 1,
            "event_id": event_id,
            "label": label,
            "label_time": label_time,
        }
        yield event_id.encode(), orjson.dumps(payload)
