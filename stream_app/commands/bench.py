"""`stream-app bench NAME`: benchmarks printing JSON, each against a baseline in the same run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from stream_app.settings import Settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("bench", help="benchmarks (JSON on stdout)")
    benches = parser.add_subparsers(dest="bench", required=True, metavar="BENCH")
    decode = benches.add_parser("decode", help="decode+validate of client events, one core")
    decode.add_argument("--events", type=int, default=200_000)
    decode.add_argument("--use-case", help="use case name or .toml path (default: settings)")
    simulation = benches.add_parser(
        "simulation", help="model trained on simulated history vs a constant, before/after drift"
    )
    simulation.add_argument("--use-case", help="use case name or .toml path (default: settings)")
    simulation.add_argument("--days", type=float, default=7)
    simulation.add_argument("--events-per-day", type=int, default=10_000)
    e2e = benches.add_parser(
        "e2e", help="scoring path throughput and latency against naive, passthrough, raw, ceiling"
    )
    e2e.add_argument("--events", type=int, default=100_000, help="events per contestant")
    e2e.add_argument("--naive-events", type=int, default=5_000, help="events for the naive agent")
    e2e.add_argument("--half-load-seconds", type=float, default=20.0)
    e2e.add_argument("--use-case", help="use case name or .toml path (default: settings)")
    latency = benches.add_parser(
        "latency", help="end to end and per scoring stage, at a fixed rate (p50/p95/p99)"
    )
    latency.add_argument("--rate", type=float, default=1_000, help="client events per second")
    latency.add_argument("--seconds", type=float, default=20, help="seconds of measured traffic")
    latency.add_argument(
        "--warmup-seconds", type=float, default=3, help="traffic at the rate before measuring"
    )
    latency.add_argument("--use-case", help="use case name or .toml path (default: settings)")
    features = benches.add_parser(
        "features", help="feature agent readings/s against a naive per-reading writer"
    )
    features.add_argument("--readings", type=int, default=200_000)
    features.add_argument("--naive-readings", type=int, default=5_000)
    features.add_argument("--use-case", help="use case name or .toml path (default: settings)")
    freshness = benches.add_parser(
        "freshness", help="reading produce -> visible in Cassandra -> used by a prediction"
    )
    freshness.add_argument("--rate", type=float, default=5_000, help="readings per second")
    freshness.add_argument("--seconds", type=float, default=30)
    freshness.add_argument(
        "--warmup-seconds", type=float, default=10, help="traffic before probes are counted"
    )
    freshness.add_argument("--use-case", help="use case name or .toml path (default: settings)")
    replay = benches.add_parser(
        "replay", help="a backtest of a range against a raw consume of the same range"
    )
    replay.add_argument("--events", type=int, default=200_000, help="events in the range")
    replay.add_argument("--rounds", type=int, default=2, help="runs of each (best is kept)")
    replay.add_argument("--use-case", help="use case name or .toml path (default: settings)")
    scale = benches.add_parser(
        "scale",
        help="one backlog drained by 1, 2 and 3 worker processes: events/s, partitions per "
        "worker and peak lag per count",
    )
    scale.add_argument("--events", type=int, default=100_000, help="events in the backlog")
    scale.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2, 3], help="worker counts to run"
    )
    scale.add_argument("--use-case", help="use case name or .toml path (default: settings)")
    chaos = benches.add_parser(
        "chaos",
        help="faults under load (kill -9, rebalance, Cassandra and Kafka restarts): "
        "no-loss accounting per scenario",
    )
    chaos.add_argument(
        "--scenario",
        action="append",
        choices=[
            "kill",
            "rebalance",
            "cassandra",
            "kafka",
            "hostile",
            "backpressure",
            "broker",
            "cassandra-node",
            "rolling",
            "partition",
        ],
        help="one scenario (repeat for several; default: all single-node ones, or on a "
        "local cluster its four: broker, cassandra-node, rolling, partition)",
    )
    chaos.add_argument("--rate", type=float, default=300, help="client events per second")
    chaos.add_argument("--seconds", type=float, default=60, help="seconds of traffic")
    chaos.add_argument(
        "--repeat", type=int, default=1, help="run the chosen scenarios this many times"
    )
    chaos.add_argument("--use-case", help="use case name or .toml path (default: settings)")
    chaos.add_argument(
        "--guarantee",
        choices=["at_least_once", "exactly_once"],
        help="the workers' consumer.guarantee (default: settings); exactly_once adds the "
        "target duplicates == 0",
    )
    scorer = benches.add_parser(
        "scorer",
        help="the compiled scorer against LightGBM predict at batch sizes 1 and 1,000 "
        "(every shipped use case unless --use-case)",
    )
    scorer.add_argument("--use-case", help="use case name or .toml path (default: all shipped)")
    scorer.add_argument("--days", type=float, default=3.0, help="days of simulated history")
    scorer.add_argument("--events-per-day", type=int, help="history density (default: spec)")
    scorer.add_argument("--repeats", type=int, default=2000, help="calls at batch size 1")
    estimates = benches.add_parser(
        "estimates",
        help="label-free estimates (CBPE, DLE) under covariate shift and concept drift: their "
        "error against the realised metric and how much earlier they signal",
    )
    estimates.add_argument("--use-case", help="use case name or .toml path (default: settings)")
    estimates.add_argument(
        "--train-days", type=float, default=6.0,
        help="history the version is trained on; its validation rows (the newest fifth) "
        "should span a whole day, or DLE's loss models miss the hours they never saw",
    )  # fmt: skip
    estimates.add_argument(
        "--hours", type=float, default=48.0,
        help="hours streamed after training; the drift starts half way",
    )  # fmt: skip
    estimates.add_argument(
        "--events-per-day", type=int, default=50_000,
        help="density: with fewer events a window's realised metric is too noisy to judge a "
        "20%% error on",
    )  # fmt: skip
    estimates.add_argument(
        "--window-s", type=float, default=3600,
        help="windows the estimate is judged on: long enough that the realised metric's own "
        "sampling error (reported: noise_floor) stays below the change",
    )  # fmt: skip
    estimates.add_argument("--seed", type=int, default=42)
    for bench in (
        decode, simulation, e2e, latency, features, freshness, replay, scale, chaos, scorer,
        estimates,
    ):  # fmt: skip
        bench.add_argument("--json", type=Path, help="also write the JSON to this file")
    parser.set_defaults(run=run)


OFFLINE = (
    "decode",
    "simulation",
    "scorer",
    "estimates",
)  # the benches that need no Kafka or Cassandra


def run(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.errors import NoSimulation
    from stream_app.use_cases.deployment import load

    if args.bench == "scorer" and not args.use_case:  # every shipped use case
        from stream_app.bench import scorer as scorer_bench
        from stream_app.use_cases.spec import available_use_cases, load_use_case

        shipped = [load_use_case(name) for name in available_use_cases()]
        result = scorer_bench.run(
            settings, [u for u in shipped if u.simulation is not None], args.days,
            args.events_per_day, args.repeats,
        )  # fmt: skip
        return _print(result, args.json)
    use_case, settings = load(args.use_case, settings)
    if use_case.simulation is None:  # every bench runs on a simulated world
        raise NoSimulation(use_case.name, args.use_case or settings.use_case, "benchmark on")
    if args.bench not in OFFLINE:
        from stream_app.kafka.admin import reach

        reach(settings.kafka, timeout_s=5)  # one clear line when Kafka is not there

    if args.bench == "decode":
        from stream_app.bench import decode

        result = decode.run(use_case, args.events)
    elif args.bench == "simulation":
        from stream_app.bench import simulation as simulation_bench

        result = simulation_bench.run(use_case, args.days, args.events_per_day)
    elif args.bench == "estimates":
        from stream_app.bench import estimates as estimates_bench

        result = estimates_bench.run(
            settings, use_case, args.train_days, args.hours, args.events_per_day, args.window_s,
            args.seed,
        )  # fmt: skip
    elif args.bench in ("features", "freshness"):
        from stream_app.bench import features as features_bench

        if args.bench == "features":
            result = features_bench.run_features(
                settings, use_case, args.readings, args.naive_readings
            )
        else:
            result = features_bench.run_freshness(
                settings, use_case, args.rate, args.seconds, warmup_s=args.warmup_seconds
            )
    elif args.bench == "e2e":
        from stream_app.bench import e2e as e2e_bench

        result = e2e_bench.run(
            settings, use_case, args.events, args.naive_events, args.half_load_seconds
        )
    elif args.bench == "latency":
        from stream_app.bench import latency as latency_bench

        result = latency_bench.run(
            settings, use_case, args.rate, args.seconds, warmup_s=args.warmup_seconds
        )
    elif args.bench == "replay":
        from stream_app.bench import replay_speed as replay_bench

        result = replay_bench.run(settings, use_case, args.events, args.rounds)
    elif args.bench == "scorer":
        from stream_app.bench import scorer as scorer_bench

        result = scorer_bench.run(
            settings, [use_case], args.days, args.events_per_day, args.repeats
        )
    elif args.bench == "scale":
        from stream_app.bench import scale as scale_bench

        result = scale_bench.run(settings, use_case, args.events, tuple(args.workers))
    elif args.bench == "chaos":
        from stream_app.bench import chaos as chaos_bench

        default = (
            chaos_bench.CLUSTER_SCENARIOS if settings.services.cluster else chaos_bench.SCENARIOS
        )
        scenarios = args.scenario or list(default)
        if args.guarantee is not None:
            consumer = settings.consumer.model_copy(update={"guarantee": args.guarantee})
            settings = settings.model_copy(update={"consumer": consumer})
        result = chaos_bench.run(
            settings, use_case, scenarios, args.rate, args.seconds, repeat=args.repeat
        )
    return _print(result, args.json)


def _print(result: dict[str, Any], path: Path | None) -> int:
    text = json.dumps(result, indent=2)
    print(text)
    if path:
        path.write_text(text + "\n")
    return 0
