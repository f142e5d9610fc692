"""The labels of a replay, read from the ground-truth topic in a process of its own.

Reading and decoding every label of the range is as much Python work as reading the events
themselves; on a thread it held the interpreter lock half the time the events' reading,
matching and scoring needed it. Child processes do it on the other cores (each a share of
the topic's partitions, ``replay.label_processes``) and send back one dictionary each. Like
the events, the topic is read by an assigned consumer that commits nothing.
"""

from __future__ import annotations

import pickle
import signal
import subprocess
import sys
import time
from contextlib import closing
from dataclasses import dataclass, replace

from stream_app.contracts.decode import decode_ground_truth
from stream_app.errors import InvalidEvent, StreamAppError
from stream_app.kafka.schema_registry import RegistrySchemas
from stream_app.replay.plan import plan_replay
from stream_app.replay.reader import RangeReader
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
    share: int = 0  # this reader's partitions: those whose number % shares == share
    shares: int = 1


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
    mine = [p for p in plan.partitions if p.partition % request.shares == request.share]
    plan = replace(plan, partitions=mine)
    found: dict[str, float] = {}
    reader = RangeReader(request.kafka, plan, request.group_id, request.batch_size)
    labels = RegistrySchemas(request.schema_registry).reader("ground_truth")  # as the worker does
    with closing(reader):
        for batch in reader.raw_batches():  # only the values are needed: no message tuples
            values = [m.value() for m in batch.messages]
            labels.prepare_blocking(values)
            for value in values:
                try:
                    truth = decode_ground_truth(value, request.max_message_bytes, labels.parse)
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
    """``read_labels`` running in ``processes`` child processes from construction, each
    reading a share of the topic's partitions (a label is keyed by its event id, so an
    event's labels are in one partition); ``result`` waits for them and merges, ``stop``
    ends them early (an interrupted replay).

    A child is a fresh interpreter (``python -m``), not a fork: the parent holds threads
    (the Cassandra driver's, librdkafka's) that a fork would copy in whatever state they
    were, and multiprocessing's ``spawn`` would re-import the caller's main module."""

    def __init__(self, request: LabelsRequest, processes: int = 1) -> None:
        self._processes: list[subprocess.Popen[bytes]] = []
        for share in range(processes):
            process = subprocess.Popen(
                [sys.executable, "-m", "stream_app.replay.labels"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            self._processes.append(process)
            assert process.stdin is not None
            pickle.dump(replace(request, share=share, shares=processes), process.stdin,
                        protocol=pickle.HIGHEST_PROTOCOL)  # fmt: skip
            process.stdin.close()

    def result(self) -> Labels:
        outcomes = [self._result(process) for process in self._processes]
        found = outcomes[0].found
        for outcome in outcomes[1:]:
            found.update(outcome.found)
        return Labels(found, any(o.truncated for o in outcomes), max(o.seconds for o in outcomes))

    def _result(self, process: subprocess.Popen[bytes]) -> Labels:
        assert process.stdout is not None
        try:
            outcome = pickle.load(process.stdout)
        except (EOFError, pickle.UnpicklingError):
            code = process.wait()
            self.stop()
            raise StreamAppError(
                f"the labels process ended without an answer (exit code {code})"
            ) from None
        process.wait()
        if isinstance(outcome, str):
            self.stop()
            raise StreamAppError(f"reading the labels failed: {outcome}")
        assert isinstance(outcome, Labels)
        return outcome

    def stop(self) -> None:
        for process in self._processes:
            if process.poll() is None:
                process.terminate()
            process.wait()
            if process.stdout is not None:
                process.stdout.close()


if __name__ == "__main__":
    # run as the module's importable self, so what is pickled names stream_app.replay.labels
    from stream_app.replay.labels import _child as child

    child()
