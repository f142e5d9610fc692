"""Readiness (``/ready``): what makes a worker ready, and probes that never block or pile up."""

from __future__ import annotations

import asyncio
import threading

from stream_app.kafka.consumer import ConsumerState
from stream_app.monitoring.readiness import Reach, Readiness, judge

ASSIGNED = ConsumerState("client-events", "app-scoring", "assigned", (0, 1))
WAITING = ConsumerState("sensor-readings", "app-features", "waiting", ())
OK = Reach(None, 0.0)


def test_assigned_or_waiting_consumers_a_champion_and_answering_servers_are_ready() -> None:
    ready, body = judge([ASSIGNED, WAITING], {"eta": "v3"}, {"kafka": OK, "cassandra": OK})
    assert ready
    assert body["status"] == "ready"
    assert body["reasons"] == []
    assert body["consumers"][0]["partitions"] == (0, 1)
    assert body["dependencies"] == {"kafka": "ok", "cassandra": "ok"}


def test_every_reason_for_not_being_ready_is_named() -> None:
    starting = ConsumerState("ground-truth", "app-accuracy", "starting", ())
    draining = ConsumerState("client-events", "app-scoring", "draining", ())
    ready, body = judge(
        [starting, draining, WAITING],
        {"eta": None, "fraud": "v1"},
        {"kafka": Reach("KafkaException: timed out", 1.0), "cassandra": None},
    )
    assert not ready
    assert body["status"] == "not ready"
    assert body["reasons"] == [
        "the ground-truth consumer (group app-accuracy) is starting",
        "the client-events consumer (group app-scoring) is draining",
        "use case eta has no champion loaded",
        "kafka is unreachable: KafkaException: timed out",
        "cassandra has not been reached yet",
    ]
    assert body["dependencies"]["cassandra"] == "not checked yet"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_probes_run_on_a_thread_at_most_every_interval_and_a_slow_one_does_not_block() -> None:
    async def scenario() -> None:
        clock = Clock()
        readiness = Readiness(every_s=2.0, clock=clock)
        calls: list[str] = []
        answer = threading.Event()
        answer.set()
        failing = [False]

        def kafka() -> None:
            calls.append(threading.current_thread().name)
            answer.wait(5)
            if failing[0]:
                raise ConnectionError("broker down\nmore detail")

        readiness.watch_dependency("kafka", kafka)
        readiness.watch_champion("eta", lambda: "v1")
        readiness.watch_consumer(lambda: ASSIGNED)

        ready, _ = await readiness.report()  # the first report waits for a first answer
        assert ready
        assert len(calls) == 1
        assert calls[0] != threading.current_thread().name
        clock.now = 1.0
        await readiness.report()
        assert len(calls) == 1  # answered from the last probe

        failing[0] = True
        answer.clear()  # the next probe hangs
        clock.now = 3.0
        ready, _ = await readiness.report()  # starts a probe, answers from the last one
        assert ready
        for _ in range(5_000):  # the hanging probe's thread has begun
            if len(calls) == 2:
                break
            await asyncio.sleep(0.001)
        for _ in range(3):
            await readiness.report()
            await asyncio.sleep(0.01)
        assert len(calls) == 2  # one probe at a time, not one per request
        answer.set()
        for _ in range(5_000):  # its answer is in
            ready, body = await readiness.report()
            if not ready:
                break
            await asyncio.sleep(0.001)
        assert not ready
        assert body["reasons"] == ["kafka is unreachable: ConnectionError: broker down"]

    asyncio.run(scenario())
