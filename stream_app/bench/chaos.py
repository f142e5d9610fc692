"""`stream-app bench chaos` (`make chaos`): faults under load, with no-loss accounting.

Per scenario, on the running local services, in topics of its own (keyspace
``<keyspace>_bench``): a worker (`stream-app worker`, as deployed), simulated client events
at a steady rate (2% of them invalid) for ``seconds``, and one kind of fault while they flow:

- ``kill``: the worker killed with SIGKILL five times, restarted each time;
- ``rebalance``: a second worker joins the consumer groups, then leaves;
- ``cassandra``: Cassandra stopped for 30 s, then started again;
- ``kafka``: the broker restarted at once, then stopped for ``KAFKA_DOWN_S`` (longer than the
  session timeout, so the group forgets the worker's members and their partitions are lost)
  and started again;
- ``backpressure``: 2,000 events/s, and the worker's Cassandra slowed down (every reply
  delayed 1 s, through a proxy) for 30 s: scoring slows, work waits in Kafka (the consumer
  lag grows), and the worker's memory (RSS, sampled every 0.5 s) must stay bounded; reported
  before, during and after the slow spell;
- on a local cluster (``services.cluster``, `make chaos-cluster`), ``broker``: the broker that
  leads most of the scenario's partitions killed with SIGKILL, started again after
  ``NODE_DOWN_S / 2``; ``cassandra-node``: one Cassandra node killed with SIGKILL for
  ``NODE_DOWN_S``; ``rolling``: the brokers restarted one after another (SIGTERM, start, ready,
  ``ROLL_SETTLE_S``), as an upgrade does;
- ``partition`` (on a cluster by default, and on a single node when named): a second worker
  joins, and once it scores it is cut off from Kafka for ``CUT_FOR_S`` (``bench.partition``:
  its packets to the brokers dropped) while the first goes on; then reconnected;
- ``hostile``: ~100,000 hostile messages (every dead-letter kind, random bytes, huge numbers,
  deep nesting, invalid UTF-8, wrong types) among valid events, at 5,500 messages/s for 20 s
  (or ``seconds`` when shorter).

Every scenario also counts workers that exited by themselves (``crashes``). ``repeat`` runs
each scenario that many times; every run's worker logs are kept in a folder of its own
(``<home>/bench/chaos-<run>/<scenario>-<repetition>/``).

When traffic ends, the harness waits until every sent event has an outcome (or nothing new
arrives for ``settle_s``), reads the predictions and dead-letter topics and accounts for every
event the broker acknowledged (``accounting``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import orjson
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from stream_app.bench.accounting import Sent, account
from stream_app.bench.e2e import (
    bench_settings,
    create_topics,
    delete_topics,
    process_failure,
    settings_env,
    stop_process,
)
from stream_app.bench.partition import NetworkCut
from stream_app.cassandra_session import connected
from stream_app.errors import BenchError
from stream_app.kafka.producer import produce_when_room
from stream_app.provisioning.keyspace import ensure_keyspace
from stream_app.services import control, process
from stream_app.services.tcp_proxy import TcpProxy
from stream_app.settings import CassandraSettings, Settings, WorkerSettings
from stream_app.simulation.corrupt import corrupt, hostile
from stream_app.simulation.payloads import client_event_records
from stream_app.simulation.seeded import preload_features, prepare_model
from stream_app.simulation.world import World
from stream_app.use_cases.spec import UseCase

SCENARIOS = ("kill", "rebalance", "cassandra", "kafka", "hostile", "backpressure")
CLUSTER_SCENARIOS = ("broker", "cassandra-node", "rolling", "partition")
NODE_DOWN_S, ROLL_SETTLE_S, CUT_FOR_S = 60.0, 10.0, 40.0
PAUSE_TARGET_S = 15.0  # a cluster's scenarios: the longest pause one node lost may cause
KAFKA_DOWN_S = 20.0  # longer than the workers' session timeout (10 s)
SLOW_REPLY_S, SLOW_FROM_S, SLOW_FOR_S, SLOW_RATE = 1.0, 12.0, 30.0, 2_000
INVALID_SHARE = 0.02
HOSTILE_RATE, HOSTILE_SECONDS, HOSTILE_SHARE = 5_500, 20, 10 / 11  # ~100,000 hostile messages
QUIET = {"STREAM_APP_LIFECYCLE__ORCHESTRATOR": "false", "STREAM_APP_WORKER__LOG_LEVEL": "info"}


class Traffic(threading.Thread):
    """Client events at ``rate`` per second for ``seconds``; remembers each acknowledged one
    by (partition, offset)."""

    def __init__(
        self,
        settings: Settings,
        world: World,
        rate: float,
        seconds: float,
        invalid_share: float = INVALID_SHARE,
        spoil: Callable[[bytes, int], bytes] = lambda valid, i: corrupt(valid, i)[1],
    ) -> None:
        super().__init__(name="chaos-traffic", daemon=True)
        self.settings, self.world, self.rate, self.seconds = settings, world, rate, seconds
        self.invalid_share, self.spoil = invalid_share, spoil
        self.sent: dict[tuple[int, int], Sent] = {}
        self.failed: list[str] = []
        self.run_id = uuid.uuid4().hex[:6]

    def run(self) -> None:
        producer = Producer(
            self.settings.kafka.client_config(
                {
                    "enable.idempotence": True,
                    "acks": "all",
                    "linger.ms": 5,
                    "log_level": 3,
                }
            )
        )
        topic = self.settings.kafka.topics.client_events
        rng = np.random.default_rng(11)
        started, produced, tick = time.monotonic(), 0, 0.1
        while (elapsed := time.monotonic() - started) < self.seconds:
            due = int(elapsed * self.rate) + 1 - produced
            if due > 0:
                now = int(time.time() * 1000)
                events = self.world.client_events(np.full(due, now, dtype=np.int64))
                ids = [f"{self.run_id}-{produced + i}" for i in range(due)]
                for i, (key, value) in enumerate(client_event_records(self.world, events, ids)):
                    valid = bool(rng.random() >= self.invalid_share)
                    if not valid:
                        value = self.spoil(value, produced + i)
                    self._produce(producer, topic, key, value, Sent(ids[i], valid))
                produced += due
            producer.poll(0)
            time.sleep(tick)
        while producer.flush(5) > 0:
            pass

    def _produce(
        self, producer: Producer, topic: str, key: bytes, value: bytes, event: Sent
    ) -> None:
        def delivered(err: Any, message: Any) -> None:
            if err is None:
                self.sent[(message.partition(), message.offset())] = event
            else:
                self.failed.append(str(err))

        produce_when_room(producer, topic, value, key, 0.1, on_delivery=delivered)


class Workers:
    """The scenario's worker processes, each with its own web port and log."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings, self.log_dir = settings, log_dir
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}
        self.logs: dict[str, Path] = {}
        self.starts = 0
        self.exited: list[str] = []  # workers that had exited by themselves when stopped

    def start(
        self,
        name: str,
        port_offset: int = 0,
        wrap: Callable[[list[str]], list[str]] | None = None,
    ) -> None:
        port = self.settings.worker.web_port + port_offset
        worker = WorkerSettings(**{**self.settings.worker.model_dump(), "web_port": port})
        settings = self.settings.model_copy(update={"worker": worker})
        self.ports[name] = port
        self.starts += 1
        self.logs[name] = self.log_dir / f"{name}-{self.starts}.log"
        log = self.logs[name].open("wb")
        command = [sys.executable, "-m", "stream_app.main", "worker"]
        self.processes[name] = subprocess.Popen(
            command if wrap is None else wrap(command),
            env={**os.environ, **settings_env(settings), **QUIET},
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def wait_scoring(self, name: str, timeout_s: float = 180) -> None:
        """Until the worker's dashboard shows it published predictions in the last seconds."""
        url = f"http://127.0.0.1:{self.ports[name]}/dashboard/data"
        topic = self.settings.kafka.topics.predictions
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=2) as page:
                    if orjson.loads(page.read()).get("throughput", {}).get(topic, 0) > 0:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise process_failure(
            f"worker {name} did not start scoring in {timeout_s:.0f} s", self.logs[name]
        )

    def input_lag(self, name: str) -> int | None:
        """The worker's consumer lag on the input topic, from its dashboard."""
        url = f"http://127.0.0.1:{self.ports[name]}/dashboard/data"
        topic = self.settings.kafka.topics.client_events
        try:
            with urllib.request.urlopen(url, timeout=5) as page:
                lags = orjson.loads(page.read()).get("consumer_lag", [])
        except OSError:
            return None
        return sum(int(x["messages"]) for x in lags if x["topic"] == topic)

    def kill(self, name: str) -> None:
        process = self.processes.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait()

    def stop(self, name: str) -> None:
        process = self.processes.pop(name)
        if process.poll() is not None:
            self.exited.append(name)
        stop_process(process)

    def crashed(self) -> list[str]:
        """Workers that exited without being told to."""
        running = self.processes.items()
        return self.exited + [name for name, process in running if process.poll() is not None]

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.stop(name)


def inject(
    scenario: str,
    base: Settings,
    workers: Workers,
    progress: TextIO,
) -> None:
    """The scenario's faults, from the start of traffic."""

    def say(line: str) -> None:
        progress.write(f"  {line}\n")

    if scenario == "kill":
        for round_number in range(5):
            workers.wait_scoring("worker")
            time.sleep(1)  # mid-run: scoring, with batches in flight and offsets not yet committed
            workers.kill("worker")
            say(f"kill -9 #{round_number + 1}")
            workers.start("worker")
    elif scenario == "rebalance":
        time.sleep(12)
        workers.start("second", port_offset=1)
        progress.write("  a second worker joined\n")
        time.sleep(20)
        workers.stop("second")
        progress.write("  the second worker left\n")
    elif scenario == "cassandra":
        time.sleep(12)
        control.down(base, ["cassandra"], log=say)
        time.sleep(30)
        control.up(base, ["cassandra"], log=say)
    elif scenario == "partition":
        cut_off(workers, say)
    elif scenario in CLUSTER_SCENARIOS:
        cluster_fault(scenario, base, workers.settings, say)
    elif scenario == "kafka":
        time.sleep(15)
        control.down(base, ["kafka"], log=say)
        control.up(base, ["kafka"], log=say)
        time.sleep(5)
        control.down(base, ["kafka"], log=say)
        say(f"the broker stays down {KAFKA_DOWN_S:.0f} s (longer than the session timeout)")
        time.sleep(KAFKA_DOWN_S)
        control.up(base, ["kafka"], log=say)


def cut_off(workers: Workers, say: Callable[[str], None]) -> None:
    """A second worker joins; once it scores, it is cut off from Kafka (``partition``) for
    ``CUT_FOR_S`` while the first goes on; then it is reconnected, and leaves."""
    ports = [port for _, port in workers.settings.kafka.bootstrap_list()]
    with NetworkCut(workers.settings.worker.app_id, ports) as cut:
        time.sleep(12)
        workers.start("cut-off", port_offset=1, wrap=cut.command)
        workers.wait_scoring("cut-off")
        time.sleep(3)
        cut.cut()
        say(f"the second worker cut off from Kafka (ports {ports}) for {CUT_FOR_S:.0f} s")
        time.sleep(CUT_FOR_S)
        cut.heal()
        say("the second worker reconnected")
        time.sleep(15)
        workers.stop("cut-off")
        say("the second worker left")


def leading_broker(settings: Settings) -> int:
    """The broker that leads most partitions of the scenario's input and output topics."""
    admin = AdminClient(settings.kafka.client_config())
    metadata = admin.list_topics(timeout=10)
    topics = settings.kafka.topics
    leaders = Counter(
        partition.leader
        for name in (topics.client_events, topics.predictions, topics.dead_letter)
        for partition in metadata.topics[name].partitions.values()
    )
    return leaders.most_common(1)[0][0]


def cluster_fault(
    scenario: str, base: Settings, bench: Settings, say: Callable[[str], None]
) -> None:
    """One node of the local cluster lost (killed, or restarted in turn), while traffic runs."""
    nodes = control.processes(base)
    time.sleep(15)
    if scenario == "broker":
        spec = nodes[f"kafka-{leading_broker(bench)}"]
        process.kill(spec)
        say(f"kill -9 {spec.name} (it led the most partitions); down {NODE_DOWN_S / 2:.0f} s")
        time.sleep(NODE_DOWN_S / 2)
        say(f"{spec.name} ready again in {control.start_one(base, spec):.1f} s")
    elif scenario == "cassandra-node":
        spec = nodes[sorted(n for n in nodes if n.startswith("cassandra-"))[-1]]
        process.kill(spec)
        say(f"kill -9 {spec.name}; down {NODE_DOWN_S:.0f} s")
        time.sleep(NODE_DOWN_S)
        say(f"{spec.name} ready again in {control.start_one(base, spec):.1f} s")
    elif scenario == "rolling":
        for name in sorted(n for n in nodes if n.startswith("kafka-")):
            process.stop(nodes[name], base.services.stop_timeout_s)
            say(f"{name} stopped; ready again in {control.start_one(base, nodes[name]):.1f} s")
            time.sleep(ROLL_SETTLE_S)


class MemorySampler(threading.Thread):
    """The resident memory (MB) of a process every 0.5 s, with the time of each sample."""

    def __init__(self, pid: int) -> None:
        super().__init__(name="chaos-memory", daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, float]] = []
        self.done = threading.Event()

    def run(self) -> None:
        status = Path(f"/proc/{self.pid}/status")
        while not self.done.wait(0.5):
            try:
                line = next(x for x in status.read_text().splitlines() if x.startswith("VmRSS"))
            except (OSError, StopIteration):
                return
            self.samples.append((time.monotonic(), int(line.split()[1]) / 1024))

    def peak(self, start: float, end: float) -> float | None:
        values = [mb for at, mb in self.samples if start <= at < end]
        return round(max(values), 1) if values else None


def slow_cassandra(workers: Workers, proxy: TcpProxy, progress: TextIO) -> dict[str, Any]:
    """Replies of the worker's Cassandra delayed for a spell; its memory before, during and
    after (peak RSS, MB)."""
    sampler = MemorySampler(workers.processes["worker"].pid)
    sampler.start()
    began = time.monotonic()
    time.sleep(SLOW_FROM_S)
    proxy.set_delay(SLOW_REPLY_S)
    progress.write(f"  Cassandra replies delayed {SLOW_REPLY_S} s\n")
    slow_from = time.monotonic()
    time.sleep(SLOW_FOR_S)
    lag = workers.input_lag("worker")
    proxy.set_delay(0.0)
    progress.write(f"  Cassandra at full speed again (input lag {lag} events)\n")
    slow_to = time.monotonic()
    time.sleep(SLOW_FOR_S * 2)  # catching up on the lag, then idle
    sampler.done.set()
    return {
        "rss_mb_every_5_s": [round(mb) for _, mb in sampler.samples[::10]],
        "rss_mb_peak_before": sampler.peak(began, slow_from),
        "rss_mb_peak_slow": sampler.peak(slow_from, slow_to),
        "rss_mb_peak_after": sampler.peak(slow_to, time.monotonic()),
        "input_lag_at_end_of_slow_spell": lag,
        "slow_reply_s": SLOW_REPLY_S,
        "slow_for_s": SLOW_FOR_S,
    }


def read_outcomes(
    settings: Settings, expected: int, settle_s: float, deadline_s: float
) -> tuple[list[tuple[str, str, str]], list[tuple[int, int]], list[int]]:
    """Predictions (event id, role, prediction id) and dead letters (source partition, offset)
    read from the start, until ``expected`` outcomes arrived and nothing new came for a few
    seconds, or nothing new came for ``settle_s``, or ``deadline_s`` passed."""
    topics = settings.kafka.topics
    consumer = Consumer(
        settings.kafka.client_config(
            {
                "group.id": f"chaos-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",  # as downstream consumers should read
                "log_level": 3,
            }
        )
    )
    consumer.subscribe([topics.predictions, topics.dead_letter])
    predictions: list[tuple[str, str, str]] = []
    dead: list[tuple[int, int]] = []
    stamps: list[int] = []
    outcome_ids: set[Any] = set()
    began = last_new = time.monotonic()
    try:
        while time.monotonic() - began < deadline_s:
            quiet_for = time.monotonic() - last_new
            if quiet_for > settle_s or (len(outcome_ids) >= expected and quiet_for > 5):
                break
            for message in consumer.consume(5000, 0.5):
                if message.error() is not None:  # end of a partition, or a broker restarting
                    continue
                last_new = time.monotonic()
                payload = orjson.loads(message.value() or b"{}")
                if message.topic() == topics.predictions:
                    predictions.append(
                        (payload["event_id"], payload["role"], payload["prediction_id"])
                    )
                    if payload["event_id"] not in outcome_ids:  # pauses: first copies only
                        stamps.append(message.timestamp()[1])
                    outcome_ids.add(payload["event_id"])
                elif payload.get("source_topic") == topics.client_events:
                    dead.append((payload["partition"], payload["offset"]))
                    outcome_ids.add((payload["partition"], payload["offset"]))
    finally:
        consumer.close()
    return predictions, dead, stamps


def run_scenario(
    scenario: str,
    settings: Settings,
    world: World,
    rate: float,
    seconds: float,
    settle_s: float,
    run_id: str,
    log_dir: Path,
    progress: TextIO,
    repetition: int = 1,
) -> dict[str, Any]:
    bench = bench_settings(settings, run_id, f"chaos-{scenario}-{repetition}")
    log_dir = log_dir / f"{scenario}-{repetition}"
    log_dir.mkdir(parents=True, exist_ok=True)
    create_topics(bench)
    proxy = TcpProxy(settings.cassandra.port) if scenario == "backpressure" else None
    served = bench
    if proxy is not None:  # the worker reaches Cassandra through the proxy
        port = {"port": proxy.port}
        served = bench.model_copy(
            update={"cassandra": CassandraSettings(**{**bench.cassandra.model_dump(), **port})}
        )
    workers = Workers(served, log_dir)
    extra: dict[str, Any] = {}
    try:
        workers.start("worker")
        time.sleep(12)  # the worker joins its groups before traffic starts
        if scenario == "hostile":
            hostile_s = min(HOSTILE_SECONDS, seconds)
            traffic = Traffic(bench, world, HOSTILE_RATE, hostile_s, HOSTILE_SHARE, hostile)
        elif scenario == "backpressure":
            traffic = Traffic(bench, world, SLOW_RATE, seconds)
        else:
            traffic = Traffic(bench, world, rate, seconds)
        traffic.start()
        if proxy is not None:
            extra = slow_cassandra(workers, proxy, progress)
        inject(scenario, settings, workers, progress)
        traffic.join()
        if traffic.failed:
            progress.write(f"  {len(traffic.failed)} sends failed: {traffic.failed[:3]}\n")
        predictions, dead, stamps = read_outcomes(bench, len(traffic.sent), settle_s, 600)
        crashed = workers.crashed()
    finally:
        workers.stop_all()
        delete_topics(bench)
        if proxy is not None:
            proxy.close()
    result = {
        "scenario": scenario,
        "repetition": repetition,
        **account(traffic.sent, predictions, dead, stamps).as_dict(),
        "crashes": len(crashed),
        **extra,
        "logs": str(log_dir),
    }
    progress.write(f"{scenario} #{repetition}: {result}\n")
    return result


def run(
    settings: Settings,
    use_case: UseCase,
    scenarios: list[str],
    rate: float = 300,
    seconds: float = 60,
    settle_s: float = 90,
    progress: TextIO = sys.stderr,
    repeat: int = 1,
) -> dict[str, Any]:
    on_cluster = [s for s in scenarios if s in CLUSTER_SCENARIOS]
    if on_cluster and not settings.services.cluster:
        raise BenchError(
            f"scenarios {on_cluster} need the local cluster: run them with the settings of "
            "deploy/cluster.env (make chaos-cluster)"
        )
    run_id = uuid.uuid4().hex[:6]
    base = bench_settings(settings, run_id, "chaos")
    ensure_keyspace(base.cassandra)
    log_dir = settings.services.home.resolve() / "bench" / f"chaos-{run_id}"
    log_dir.mkdir(parents=True, exist_ok=True)
    with connected(base.cassandra) as session:
        world = World(use_case, 7)
        version = prepare_model(session, base, use_case, 7)
        preload_features(session, base, world)
    progress.write(f"model {version}; worker logs in {log_dir}\n")
    runs = []
    for repetition in range(1, repeat + 1):  # the whole suite, then again: faults interleave
        for scenario in scenarios:
            runs.append(
                run_scenario(
                    scenario,
                    settings,
                    world,
                    rate,
                    seconds,
                    settle_s,
                    run_id,
                    log_dir,
                    progress,
                    repetition,
                )
            )
    return summarise(runs, rate, seconds, repeat, str(log_dir), settings.consumer.guarantee)


def summarise(
    runs: list[dict[str, Any]],
    rate: float,
    seconds: float,
    repeat: int,
    logs: str,
    guarantee: str = "at_least_once",
) -> dict[str, Any]:
    """Every run, and per scenario its figures over the repetitions and its targets."""
    scenarios: dict[str, dict[str, Any]] = {}
    for run in runs:
        summary = scenarios.setdefault(run["scenario"], {"repetitions": 0})
        summary["repetitions"] += 1
        for figure in ("lost", "duplicates", "longest_pause_s", "crashes"):
            summary.setdefault(figure, []).append(run[figure])
    targets: dict[str, bool] = {}
    for name, summary in scenarios.items():
        targets[f"{name}: lost == 0 in every run"] = not any(summary["lost"])
        targets[f"{name}: no worker crashed"] = not any(summary["crashes"])
        if name in ("broker", "cassandra-node"):
            targets[f"{name}: longest pause < {PAUSE_TARGET_S:g} s"] = (
                max(summary["longest_pause_s"]) < PAUSE_TARGET_S
            )
        if guarantee == "exactly_once":
            targets[f"{name}: duplicates == 0 in every run"] = not any(summary["duplicates"])
    return {
        "benchmark": "chaos",
        "guarantee": guarantee,
        "rate": rate,
        "seconds": seconds,
        "repeat": repeat,
        "logs": logs,
        "runs": runs,
        "scenarios": scenarios,
        "lost": sum(r["lost"] for r in runs),
        "duplicates": sum(r["duplicates"] for r in runs),
        "crashes": sum(r["crashes"] for r in runs),
        "targets_met": targets,
    }
