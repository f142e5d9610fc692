"""`stream-app bench decode`: client events decoded and validated per second on one core.

Baseline in the same run: bare ``orjson.loads`` of the same bytes (the floor any validation
adds to), and ``jsonschema`` validation of the parsed objects when it is installed (what a
generic validator costs). The same events in the Confluent wire format, as JSON Schema and as
Avro values (the bytes confluent-kafka's serializers write: a magic byte, the schema id, then
the JSON text or Avro's binary encoding), are decoded as a `wire` topic reads them, against
plain JSON; the schema book is filled beforehand, as the worker's is after an id's first
message (the registry is asked once per id).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import orjson

from stream_app.bundled import bundled_path
from stream_app.contracts.decode import decode_client_event
from stream_app.contracts.wire import Contract, SchemaBook, WireParser, frame
from stream_app.simulation.payloads import client_event_records
from stream_app.simulation.world import World
from stream_app.use_cases.spec import UseCase


def sample_events(use_case: UseCase, count: int, seed: int = 7) -> list[bytes]:
    """``count`` valid client events of the use case, as bytes."""
    world = World(use_case, seed)
    now = int(time.time() * 1000)
    events = world.client_events(np.full(count, now, dtype=np.int64))
    return [
        value for _, value in client_event_records(world, events, [f"e-{i}" for i in range(count)])
    ]


def _rate(function: Callable[[bytes], Any], payloads: list[bytes], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for payload in payloads:
            function(payload)
        best = min(best, time.perf_counter() - started)
    return len(payloads) / best


def run(use_case: UseCase, events: int = 200_000, rounds: int = 5) -> dict[str, Any]:
    """Events per second (best of ``rounds``) of decode+validate and of the baselines."""
    payloads = sample_events(use_case, events)
    result: dict[str, Any] = {
        "benchmark": "decode",
        "use_case": use_case.name,
        "events": events,
        "mean_bytes": round(sum(map(len, payloads)) / len(payloads), 1),
        "decode_eps": round(_rate(decode_client_event, payloads, rounds)),
        "orjson_loads_eps": round(_rate(orjson.loads, payloads, rounds)),
    }
    result["decode_vs_orjson"] = round(result["decode_eps"] / result["orjson_loads_eps"], 3)
    result["formats"] = wire_formats(payloads, rounds)
    try:
        import jsonschema  # type: ignore[import-untyped]
    except ImportError:
        return result
    schema = orjson.loads(bundled_path("schemas/client_event.schema.json").read_bytes())
    validator = jsonschema.Draft202012Validator(schema)
    sample = payloads[: max(1, events // 20)]
    result["jsonschema_eps"] = round(
        _rate(lambda raw: validator.validate(orjson.loads(raw)), sample, 1)
    )
    return result


def wire_formats(payloads: list[bytes], rounds: int) -> dict[str, Any]:
    """Decode rates of the same events framed as JSON Schema and as Avro values."""
    import io

    import fastavro

    book = SchemaBook(Contract.shipped("client_event"))
    avro_text = bundled_path("schemas/avro/client_event.avsc").read_text()
    book.add(1, "JSON", bundled_path("schemas/client_event.schema.json").read_text())
    book.add(2, "AVRO", avro_text)
    avro_schema = fastavro.parse_schema(orjson.loads(avro_text))

    def to_avro(raw: bytes) -> bytes:
        out = io.BytesIO()
        fastavro.schemaless_writer(out, avro_schema, orjson.loads(raw))
        return frame(2, out.getvalue())

    framed = {"wire_json_schema": [frame(1, p) for p in payloads],
              "wire_avro": [to_avro(p) for p in payloads]}  # fmt: skip
    parse = WireParser(book)
    framed_decode = partial(decode_client_event, max_bytes=65_536, parse=parse)
    # interleaved rounds: each format's best round met the same moments of a noisy machine
    best = dict.fromkeys(["json", *framed], 0.0)
    for _ in range(rounds):
        best["json"] = max(best["json"], _rate(decode_client_event, payloads, 1))
        for name, values in framed.items():
            best[name] = max(best[name], _rate(framed_decode, values, 1))
    formats: dict[str, Any] = {"json": {"decode_eps": round(best["json"]), "vs_json": 1.0}}
    for name, values in framed.items():
        formats[name] = {
            "decode_eps": round(best[name]),
            "vs_json": round(best[name] / best["json"], 3),
            "mean_bytes": round(sum(map(len, values)) / len(values), 1),
        }
    avro_bodies = [v[5:] for v in framed["wire_avro"]]

    def read_avro(body: bytes) -> Any:
        return fastavro.schemaless_reader(io.BytesIO(body), avro_schema, None)

    formats["wire_avro"]["fastavro_read_eps"] = round(_rate(read_avro, avro_bodies, rounds))
    return formats
