"""`stream-app bench scale`: the same backlog drained by 1, 2 and 3 worker processes.

Per worker count, on topics of its own with ``PARTITIONS`` partitions: the workers start and
join the scoring group (each holding partitions), one probe event proves they score, then a
backlog of ``events`` client events is produced and drained. Reported per count: outputs/s
(from the outputs' append times, as in `bench e2e`), the partitions each worker held, the
peak consumer lag of the scoring group (sampled every ``LAG_EVERY_S``), and events without an
output. ``speedup`` is each count's rate over the smallest count's, from the same run (the
counts run in the order given: ``--workers 3 2 1`` shows how much the order matters).

All workers share this machine's cores with Kafka and Cassandra, so the gain is bounded by
them (``cores`` is in the JSON): the figure says what adding a process buys here, not on a
cluster of machines.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any, TextIO

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from stream_app.bench.e2e import (
    PARTITIONS,
    await_first_answer,
    bench_settings,
    collect,
    create_topics,
    delete_topics,
    pregenerate,
    prepare,
    process_failure,
    produce,
    ratio,
    start_process,
    stop_process,
)
from stream_app.settings import Settings, WorkerSettings
from stream_app.use_cases.deployment import group_id
from stream_app.use_cases.spec import UseCase

WORKER_COUNTS = (1, 2, 3)
LAG_EVERY_S = 1.0
JOIN_TIMEOUT_S = 180.0


def partitions_per_member(settings: Settings, group: str) -> list[int]:
    """How many partitions each member of ``group`` holds now (sorted; [] when none, or when
    the group's coordinator did not answer in time: a busy cluster, a group just formed)."""
    admin = AdminClient(settings.kafka.client_config())
    [future] = admin.describe_consumer_groups([group]).values()
    try:
        description = future.result(timeout=30)
    except (KafkaException, TimeoutError):
        return []
    return sorted(len(member.assignment.topic_partitions) for member in description.members)


class LagSampler(threading.Thread):
    """The scoring group's lag on the input topic (end offsets minus committed offsets),
    every ``LAG_EVERY_S`` until stopped; keeps the peak."""

    def __init__(self, settings: Settings, group: str) -> None:
        super().__init__(daemon=True, name="lag-sampler")
        self.topic = settings.kafka.topics.client_events
        self.consumer = Consumer(
            settings.kafka.client_config({"group.id": group, "enable.auto.commit": False})
        )
        self.peak = 0
        self.last: int | None = None
        self._finish = threading.Event()

    def lag(self) -> int:
        partitions = [TopicPartition(self.topic, p) for p in range(PARTITIONS)]
        total = 0
        for tp in self.consumer.committed(partitions, timeout=10):
            _, high = self.consumer.get_watermark_offsets(tp, timeout=10)
            total += max(high - max(tp.offset, 0), 0)
        return total

    def run(self) -> None:
        while not self._finish.wait(LAG_EVERY_S):
            try:
                self.last = self.lag()
            except Exception:  # a slow broker answer: the next sample counts
                continue
            self.peak = max(self.peak, self.last)

    def stop(self) -> None:
        self._finish.set()
        self.join(timeout=15)
        self.consumer.close()


def run_count(
    count: int, base: Settings, use_case: UseCase, run_id: str, records: list[Any],
    world: Any, log_dir: Any, progress: TextIO,
) -> dict[str, Any]:  # fmt: skip
    """``count`` workers drain ``records``; their figures."""
    settings = bench_settings(base, run_id, f"scale{count}")
    group = group_id(settings, use_case, "scoring")
    create_topics(settings)
    processes = []
    try:
        for i in range(count):
            worker = WorkerSettings(
                **{**settings.worker.model_dump(), "web_port": settings.worker.web_port + i}
            )
            own = settings.model_copy(update={"worker": worker})
            processes.append(start_process("e2e", own, log_dir, f"scale{count}-worker{i + 1}"))
        log = log_dir / f"scale{count}-worker1.log"
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        while len(members := partitions_per_member(settings, group)) < count or 0 in members:
            if time.monotonic() > deadline:
                raise process_failure(f"{count} workers never all held partitions", log)
            time.sleep(1)
        await_first_answer(settings, world, f"{run_id}-probe{count}", processes, log,
                           "the workers")  # fmt: skip
        sampler = LagSampler(settings, group)
        sampler.start()
        try:
            created = produce(settings, records)
            outputs = collect(settings, len(records) + 1, created, timeout_s=600)
            members = partitions_per_member(settings, group)
        finally:
            sampler.stop()
    finally:
        for process in processes:
            stop_process(process)
        delete_topics(settings)
    result = {
        "workers": count,
        "eps": outputs.eps_figure,
        "partitions_per_worker": members,
        "peak_lag": sampler.peak,
        "lost": len(records) + 1 - outputs.distinct_keys,
    }
    progress.write(f"{count} workers: {outputs.eps:,.0f} events/s, partitions {members}, "
                   f"peak lag {sampler.peak:,}\n")  # fmt: skip
    return result


def run(
    settings: Settings,
    use_case: UseCase,
    events: int,
    counts: tuple[int, ...] = WORKER_COUNTS,
    seed: int = 7,
    progress: TextIO = sys.stderr,
) -> dict[str, Any]:
    run_id, world, log_dir = prepare(settings, use_case, seed, progress)
    records = pregenerate(world, events, f"{run_id}-s")
    runs = [
        run_count(n, settings, use_case, run_id, records, world, log_dir, progress) for n in counts
    ]
    one = min(runs, key=lambda r: r["workers"])["eps"]  # the fewest workers, whatever the order
    return {
        "benchmark": "scale",
        "events": events,
        "partitions": PARTITIONS,
        "cores": os.cpu_count(),
        "guarantee": settings.consumer.guarantee,
        "bootstrap_servers": settings.kafka.bootstrap_servers,
        "runs": runs,
        "speedup": {str(r["workers"]): ratio(r["eps"], one, 2) for r in runs},
        "lost": sum(r["lost"] for r in runs),
        "targets_met": {"lost == 0": all(r["lost"] == 0 for r in runs)},
    }
