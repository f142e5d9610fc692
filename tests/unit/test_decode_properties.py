"""Property tests: whatever the bytes, decoding gives a valid event or a coded refusal, and
the hand-written validators agree with the JSON Schemas they mirror."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_app.contracts import codes
from stream_app.contracts.decode import (
    decode_client_event,
    decode_ground_truth,
    decode_sensor_reading,
)
from stream_app.errors import InvalidEvent

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
DECODERS: dict[str, Callable[[bytes], Any]] = {
    "client_event": decode_client_event,
    "sensor_reading": decode_sensor_reading,
    "ground_truth": decode_ground_truth,
}
VALIDATORS = {
    name: jsonschema.Draft202012Validator(
        orjson.loads((SCHEMAS / f"{name}.schema.json").read_bytes())
    )
    for name in DECODERS
}
EXAMPLES = {
    name: orjson.loads(next((SCHEMAS / "examples").glob(f"{name}.*.json")).read_bytes())
    for name in DECODERS
}

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=140)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
# Values at the edges of what the schemas allow: lengths, time bounds, units, types.
EDGE_VALUES: list[Any] = [
        "", "x", "x" * 128, "x" * 129, 0, 1, -1, 1.0, 1.5, True, False, None, [], {},
        946_684_800_000, 946_684_799_999, 4_102_444_800_000, 4_102_444_800_001,
        1_795_783_200, 1_795_783_200_000.0, 1_795_783_200_000.5, {"a": "b"}, {"a": 1},
        {"a": ""}, {f"k{i}": 1.0 for i in range(257)}, {f"k{i}": "v" for i in range(17)},
]  # fmt: skip
edge_values = st.sampled_from(EDGE_VALUES).map(copy.deepcopy)
mutation_values = edge_values | json_values


def verdict(decoder: Callable[[bytes], Any], raw: bytes) -> str | None:
    """None if accepted, else the refusal code; any other exception fails the test."""
    try:
        decoder(raw)
    except InvalidEvent as error:
        refusal = error
    else:
        return None
    assert refusal.code in codes.ALL_CODES
    assert refusal.message
    return refusal.code


@given(raw=st.binary(max_size=2048))
@settings(max_examples=600)
def test_random_bytes_never_crash(raw: bytes) -> None:
    for decoder in DECODERS.values():
        verdict(decoder, raw)


@st.composite
def mutated_bytes(draw: st.DrawFn) -> bytes:
    name = draw(st.sampled_from(list(DECODERS)))
    raw = bytearray(orjson.dumps(EXAMPLES[name]))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(raw) - 1))
        action = draw(st.sampled_from(["flip", "delete", "insert", "truncate"]))
        if action == "flip":
            raw[at] = draw(st.integers(0, 255))
        elif action == "delete":
            del raw[at]
        elif action == "insert":
            raw[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            del raw[at:]
        if not raw:
            break
    return bytes(raw)


@given(raw=mutated_bytes())
@settings(max_examples=600)
def test_mutated_bytes_never_crash(raw: bytes) -> None:
    for decoder in DECODERS.values():
        verdict(decoder, raw)


@st.composite
def mutated_payloads(draw: st.DrawFn) -> tuple[str, Any]:
    """A valid example with fields removed, replaced by random JSON, or added, at any depth."""
    name = draw(st.sampled_from(list(DECODERS)))
    payload: Any = orjson.loads(orjson.dumps(EXAMPLES[name]))
    for _ in range(draw(st.integers(0, 3))):
        target = payload
        if isinstance(target, dict) and target and draw(st.booleans()):
            nested = [k for k, v in target.items() if isinstance(v, dict)]
            if nested:
                target = target[draw(st.sampled_from(nested))]
        if not isinstance(target, dict):
            break
        action = draw(st.sampled_from(["delete", "replace", "add"]))
        keys = list(target)
        if action == "delete" and keys:
            del target[draw(st.sampled_from(keys))]
        elif action == "replace" and keys:
            target[draw(st.sampled_from(keys))] = draw(mutation_values)
        else:
            target[draw(st.text(max_size=8))] = draw(mutation_values)
    if draw(st.integers(0, 9)) == 0:
        payload = draw(json_values)
    return name, payload


@given(case=mutated_payloads())
@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
def test_validators_agree_with_the_schemas(case: tuple[str, Any]) -> None:
    name, payload = case
    raw = orjson.dumps(payload)
    schema_says_valid = VALIDATORS[name].is_valid(payload)
    code = verdict(DECODERS[name], raw)
    if len(raw) <= 64 * 1024:
        assert (code is None) == schema_says_valid, (code, payload)


def _single_edits(payload: dict[str, Any]) -> list[Any]:
    """Every payload obtained by one edit: each field (and each nested entry) deleted or
    set to each edge value."""
    values = EDGE_VALUES
    edits: list[Any] = []
    for key, original in payload.items():
        without = copy.deepcopy(payload)
        del without[key]
        edits.append(without)
        for value in values:
            edits.append({**copy.deepcopy(payload), key: copy.deepcopy(value)})
        if isinstance(original, dict):
            for inner in original:
                for value in values:
                    edited = copy.deepcopy(payload)
                    edited[key][inner] = copy.deepcopy(value)
                    edits.append(edited)
    return edits


def test_every_single_edge_edit_agrees_with_the_schemas() -> None:
    checked = 0
    for name, example in EXAMPLES.items():
        for payload in _single_edits(example):
            raw = orjson.dumps(payload)
            assert (verdict(DECODERS[name], raw) is None) == VALIDATORS[name].is_valid(payload), (
                name,
                payload,
            )
            checked += 1
    assert checked > 300
