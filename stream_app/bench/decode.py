"""`stream-app bench decode`: client events decoded and validated per second on one core.

Baseline in the same run: bare ``orjson.loads`` of the same bytes (the floor any validation
adds to), and ``jsonschema`` validation of the parsed objects when it is installed (what a
generic validator costs).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from stream_app.bundled import bundled_path
from stream_app.contracts.decode import decode_client_event
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


def run(use_case: UseCase, events: int = 200_000, rounds: int = 3) -> dict[str, Any]:
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
