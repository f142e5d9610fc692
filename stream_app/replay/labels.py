"""The labels of a replay, read from the ground-truth topic in a process of its own.

Reading and decoding every label of the range is as much Python work as reading the events
themselves; on a thread it held the interpreter lock half the time the events' reading,
matching and scoring needed it. A child process does it on another core and sends back one
dictionary. Like the events, the topic is read by an assigned consumer that commits nothing.
"""

from __future__ import annotations

import pickle
import signal
import subprocess
import sys
import time
from contextlib import closing
from dataclasses import dataclass

from stream_app.contracts.decode import decode_ground_truth
from stream_app.errors import InvalidEvent, StreamAppError
from stream_app.kafka.schema_registry import RegistrySchemas
from stream_app.replay.plan import plan_replay
from stream_app.replay.reader import read_range
from stream_app.settings import KafkaSettings, SchemaRegistrySettings


@dataclass(frozen=True)
class LabelsRequest:
    """Which part of the ground-truth topic to read, and how."""

    kafka: KafkaSettings
    topic: str
    from_ms: int
    to_ms: int
    group_id: str
    batch_size: int
    max_message_bytes: int
    schema_registry: SchemaRegistrySettings


@dataclass(frozen=True)
class Labels:
    """Every valid label found (the last one per event), whether retention cut into the
    topic's range, and the seconds the read took."""

    found: dict[str, float]
    truncated: bool
    seconds: float


def read_labels(request: LabelsRequest) -> Labels:
    """Read the labels of ``request`` in this process."""
    started = time.perf_counter()
    plan = plan_replay(request.kafka, request.topic, request.from_ms, request.to_ms)
    found: dict[str, float] = {}
    batches = read_range(request.kafka, plan, request.group_id, request.batch_size)
    schemas = RegistrySchemas(request.schema_registry)
    parse = schemas.parser("ground_truth")  # as the worker reads them
    with closing(batches):
        for batch in batches:
            schemas.prepare_blocking("ground_truth", [m.value for m in batch])
            for message in batch:
                try:
                    truth = decode_ground_truth(message.value, request.max_message_bytes, parse)
                except InvalidEvent:
                    continue
                found[truth.event_id] = truth.label
    return Labels(found, plan.truncated, time.perf_counter() - started)


def _child() -> None:
    """``python -m stream_app.replay.labels``: a pickled ``LabelsRequest`` on standard input,
    the pickled ``Labels`` (or the error's one line) on standard output."""
    # Ctrl-C reaches the whole process group: the parent decides, and stops this process
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    request = pickle.load(sys.stdin.buffer)
    try:
        outcome: Labels | str = read_labels(request)
    except Exception as error:  # sent to the parent, which raises it as its own error
        outcome = f"{type(error).__name__}: {error}"
    pickle.dump(outcome, sys.stdout.buffer, protocol=pickle.HIGHEST_PROTOCOL)
    sys.stdout.buffer.flush()


class LabelsProcess:
    """``read_labels`` running in a child process from construction; ``result`` waits for
    it, ``stop`` ends it early (an interrupted replay).

    The child is a fresh interpreter (``python -m``), not a fork: the parent holds threads
    (the Cassandra driver's, librdkafka's) that a fork would copy in whatever state they
    were, and multiprocessing's ``spawn`` would re-import the caller's main module."""

    def __init__(self, request: LabelsRequest) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "stream_app.replay.labels"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self._process.stdin is not None
        pickle.dump(request, self._process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
        self._process.stdin.close()

    def result(self) -> Labels:
        assert self._process.stdout is not None
        try:
            outcome = pickle.load(self._process.stdout)
        except (EOFError, pickle.UnpicklingError):
            code = self._process.wait()
            raise StreamAppError(
                f"the labels process ended without an answer (exit code {code})"
            ) from None
        self._process.wait()
        if isinstance(outcome, str):
            raise StreamAppError(f"reading the labels failed: {outcome}")
        assert isinstance(outcome, Labels)
        return outcome

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
        self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()


if __name__ == "__main__":
    # run as the module's importable self, so what is pickled names stream_app.replay.labels
    from stream_app.replay.labels import _child as child

    child()
