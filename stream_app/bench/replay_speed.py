"""`stream-app bench replay`: a backtest's throughput against a raw consume of the same range.

Setup, in a keyspace and topics of its own: a champion trained on simulated history, features
preloaded, N simulated client events and their labels produced, and `stream-app worker`
scoring them as production would (so the prediction log holds their served vectors). Then,
alternating in the same process: a raw confluent-kafka consume of the events' range (assign,
consume, count; the baseline) and a full replay of that range with the champion (served
vectors, scoring, the label join and the report). Each is run ``rounds`` times; the best run
of each is compared. The replay must also reproduce production's predictions (within the
compiled scorer's bound: ``models.compiled.TOLERANCE``).
"""

from __future__ import annotations

import sys
import time
import uuid
from contextlib import closing
from typing import Any, TextIO

import numpy as np
from confluent_kafka import Consumer, TopicPartition

from stream_app.bench.e2e import (
    bench_settings,
    collect,
    create_topics,
    delete_topics,
    process_failure,
    produce,
    start_process,
    stop_process,
)
from stream_app.cassandra_session import connected
from stream_app.provisioning.keyspace import ensure_keyspace
from stream_app.replay.backtest import Backtest, ReplayRequest
from stream_app.replay.plan import ReplayPlan, plan_replay
from stream_app.replay.report import ReplayReport
from stream_app.settings import KafkaSettings, Settings
from stream_app.simulation.payloads import client_event_records, ground_truth_records
from stream_app.simulation.seeded import preload_features, prepare_model
from stream_app.simulation.world import World
from stream_app.use_cases.spec import UseCase


def raw_consume(kafka: KafkaSettings, plan: ReplayPlan) -> tuple[int, float]:
    """Records read and seconds taken by a bare assign-and-consume loop over ``plan``. Like
    the replay's reader it asks for no more messages than the range has left (the client
    waits out its timeout for a batch it cannot fill)."""
    started = time.perf_counter()
    consumer = Consumer(
        kafka.client_config({"group.id": f"bench-raw-{uuid.uuid4().hex[:8]}",
         "enable.auto.commit": False, "enable.partition.eof": True, "log_level": 4})
    )  # fmt: skip
    ends = {p.partition: p.end for p in plan.partitions if p.count}
    left = sum(p.count for p in plan.partitions)
    consumer.assign([TopicPartition(plan.topic, p.partition, p.start) for p in plan.partitions
                     if p.count])  # fmt: skip
    count = 0
    with closing(consumer):
        while ends:
            messages: list[Any] = consumer.consume(max(min(10_000, left - count), 1), 1.0)
            for message in messages:
                partition = message.partition()
                if message.error() is None:
                    if message.offset() < ends.get(partition, -1):
                        count += 1
                        if message.offset() + 1 >= ends[partition]:
                            ends.pop(partition)
                elif partition in ends and message.offset() >= ends[partition]:
                    ends.pop(partition)
    return count, time.perf_counter() - started


def run(
    settings: Settings,
    use_case: UseCase,
    events: int,
    rounds: int = 2,
    seed: int = 7,
    progress: TextIO = sys.stderr,
) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:6]
    bench = bench_settings(settings, run_id, "replay")
    ensure_keyspace(bench.cassandra)
    create_topics(bench)
    log_dir = settings.services.home.resolve() / "bench" / run_id
    log_dir.mkdir(parents=True, exist_ok=True)
    with connected(bench.cassandra) as session:
        try:
            world = World(use_case, seed)
            version = prepare_model(session, bench, use_case, seed)
            preload_features(session, bench, world)
            now = int(time.time() * 1000)
            batch = world.client_events(np.full(events, now, dtype=np.int64))
            ids = [f"{run_id}-{i}" for i in range(events)]
            created = produce(bench, client_event_records(world, batch, ids))
            labelled = np.flatnonzero(batch.labelled)
            truths = ground_truth_records(
                [ids[i] for i in labelled],
                batch.labels[labelled].tolist(),
                [now + 60_000] * len(labelled),
            )
            produce(bench, list(truths), topic=bench.kafka.topics.ground_truth)
            progress.write(
                f"{events:,} events produced; the worker scores them (logs in {log_dir})\n"
            )
            worker = start_process("e2e", bench, log_dir)
            try:
                scored = collect(bench, events, created, timeout_s=600)
            finally:
                stop_process(worker)
            if scored.distinct_keys < events:
                raise process_failure(
                    f"the worker scored {scored.distinct_keys} of {events} events",
                    log_dir / "e2e.log",
                )
            stamps = list(created.values())
            plan = plan_replay(bench.kafka, bench.kafka.topics.client_events, min(stamps),
                               max(stamps) + 1)  # fmt: skip
            raw_runs: list[float] = []
            replay_runs: list[float] = []
            best: ReplayReport | None = None
            for round_number in range(rounds):
                count, seconds = raw_consume(bench.kafka, plan)
                raw_runs.append(count / seconds)
                request = ReplayRequest(plan, [version], f"bench-{run_id}-{round_number}")
                report = Backtest(bench, session, use_case, request).run()
                replay_runs.append(report["events"]["messages"] / report["timing"]["seconds"])
                if replay_runs[-1] == max(replay_runs):
                    best = report
                progress.write(
                    f"round {round_number + 1}: raw {raw_runs[-1]:,.0f}/s ({count:,} records), "
                    f"replay {replay_runs[-1]:,.0f}/s {report['timing']['phases']}\n"
                )
        finally:
            delete_topics(bench)
    assert best is not None  # rounds >= 1
    production = best["versions"][0]["production"] or {}
    raw_eps, replay_eps = max(raw_runs), max(replay_runs)
    phases = best["timing"]["phases"]  # of the best replay
    figures: dict[str, Any] = {
        "benchmark": "replay",
        "events": events,
        "model": version,
        "replay_eps": round(replay_eps),
        "raw_consume_eps": round(raw_eps),
        "replay_vs_raw": round(replay_eps / raw_eps, 3),
        "score_phase_eps": round(events / phases["read_and_score"]),
        "phases_s": phases,
        "served_vectors": best["features"]["served"],
        "point_in_time": best["features"]["point_in_time"],
        "labelled": best["events"]["labelled"],
        "identical_to_production": production.get("identical", 0),
        "compared_with_production": production.get("compared", 0),
        "runs": {
            "raw_eps": [round(r) for r in raw_runs],
            "replay_eps": [round(r) for r in replay_runs],
        },
    }
    figures["targets_met"] = {
        "replay_eps >= 0.5 x raw_consume_eps": figures["replay_vs_raw"] >= 0.5,
        "replay_eps >= 100000": replay_eps >= 100_000,
        "identical to production": figures["identical_to_production"] == events,
    }
    return figures
