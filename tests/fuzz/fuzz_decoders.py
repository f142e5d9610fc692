"""Coverage-guided fuzzing (atheris) of every decoder that reads untrusted bytes.

`make fuzz` runs it for ``FUZZ_SECONDS``; ``tests/unit/test_fuzz_harness.py`` runs it for 20,000
inputs in `make test`, so the harness cannot silently disappear again. Only stream-app's own
modules are instrumented (the decoders and what they call): instrumenting the third-party
modules they import (pydantic, the Cassandra driver) took 20 s at every start.

The first byte of an input picks the target, the rest is the message:

- the three input decoders (client event, sensor reading, ground truth): any bytes either
  decode or are refused with ``InvalidEvent`` carrying a known dead-letter code; anything else
  raised is a finding;
- the dead-letter path: a refused message's dead-letter record, read back by the reprocess
  path, gives the original bytes exactly, and re-validating it refuses it with the same code;
- the reprocess path on arbitrary bytes: ``read_dead_letter`` and ``revalidate`` refuse with a
  code or accept, never anything else.

Usage: ``python tests/fuzz/fuzz_decoders.py [libFuzzer flags] CORPUS_DIR``. The corpus folder
is seeded with the schemas' examples and the simulator's corruptions when it is empty.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["stream_app"]):  # our code: the decoders under test
    import orjson

    from stream_app.contracts import codes
    from stream_app.contracts.dead_letter import encode_dead_letter
    from stream_app.contracts.decode import (
        decode_client_event,
        decode_ground_truth,
        decode_sensor_reading,
    )
    from stream_app.errors import InvalidEvent
    from stream_app.replay.dead_letters import NOT_A_DEAD_LETTER, read_dead_letter, revalidate
    from stream_app.settings import TopicNames
    from stream_app.simulation.corrupt import CORRUPTIONS, HOSTILE

MAX_BYTES = 64 * 1024
TOPICS = TopicNames()
DECODERS: list[tuple[str, Callable[[bytes | None, int], object]]] = [
    (TOPICS.client_events, decode_client_event),
    (TOPICS.sensor_readings, decode_sensor_reading),
    (TOPICS.ground_truth, decode_ground_truth),
]
KNOWN_CODES = set(codes.ALL_CODES)
EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"


def refusal(decode: Callable[[bytes | None, int], object], value: bytes) -> InvalidEvent | None:
    """The decoder's refusal of ``value`` (with a known code), or None when it decodes."""
    try:
        decode(value, MAX_BYTES)
    except InvalidEvent as refused:
        if refused.code not in KNOWN_CODES:
            raise AssertionError(f"unknown dead-letter code {refused.code!r}") from None
        return refused
    return None


def check_dead_letter_round_trip(topic: str, value: bytes, refused: InvalidEvent) -> None:
    """The dead-letter record of a refused message rebuilds it, and is refused again alike."""
    record_bytes = encode_dead_letter(
        source_topic=topic, partition=0, offset=0, key=value[:8], value=value,
        error=refused, agent="fuzz", failed_at=0,
    )  # fmt: skip
    record = read_dead_letter(record_bytes)
    again = revalidate(record, TOPICS, MAX_BYTES)
    if again is None or again.code != refused.code:
        raise AssertionError(f"re-validation gave {again!r}, the decoder {refused.code!r}")


def test_one_input(data: bytes) -> None:
    if not data:
        return
    target, value = data[0] % (len(DECODERS) + 1), data[1:]
    if target < len(DECODERS):
        topic, decode = DECODERS[target]
        refused = refusal(decode, value)
        if refused is not None:
            check_dead_letter_round_trip(topic, value, refused)
        return
    try:  # arbitrary bytes as a dead-letter record
        record = read_dead_letter(value)
    except InvalidEvent as refused:
        if refused.code not in KNOWN_CODES | {NOT_A_DEAD_LETTER}:
            raise AssertionError(f"unknown code {refused.code!r}") from None
        return
    outcome = revalidate(record, TOPICS, MAX_BYTES)
    if outcome is not None and not isinstance(outcome, InvalidEvent):
        raise AssertionError(f"revalidate returned {outcome!r}")


def seeds() -> list[bytes]:
    """Valid examples of every input, their corruptions and the hostile kinds, each prefixed
    with the byte that picks its decoder; and dead-letter records of some of them."""
    found: list[bytes] = []
    prefixes = {"client_event": 0, "sensor_reading": 1, "ground_truth": 2}
    client_event = b""
    for path in sorted(EXAMPLES.glob("*.json")):
        kind = path.name.split(".", 1)[0]
        value = orjson.dumps(orjson.loads(path.read_bytes()))
        if kind in prefixes:
            found.append(bytes([prefixes[kind]]) + value)
        elif kind == "dead_letter":
            found.append(bytes([3]) + value)
        if kind == "client_event":
            client_event = value
    for index, build in enumerate(CORRUPTIONS.values()):
        if build is not CORRUPTIONS[codes.OVERSIZED]:
            found.append(bytes([index % 3]) + build(client_event))
    for index, hostile in enumerate(HOSTILE.values()):
        found.append(bytes([index % 3]) + hostile(client_event, index)[:MAX_BYTES])
    return found


def seed_corpus(corpus: Path) -> None:
    corpus.mkdir(parents=True, exist_ok=True)
    if any(corpus.iterdir()):
        return
    for index, seed in enumerate(seeds()):
        (corpus / f"seed-{index:03d}").write_bytes(seed)


def main(argv: list[str]) -> None:
    for argument in argv[1:]:
        if not argument.startswith("-"):
            seed_corpus(Path(argument))
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
