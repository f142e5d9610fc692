"""`stream-app simulate`: live simulated traffic to Kafka, or labelled history to Cassandra."""

from __future__ import annotations

import argparse
import json

from stream_app.settings import Settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "simulate",
        help="produce simulated client events, readings and ground truth",
        description="Live: produce to Kafka at --rate client events/s for --duration s. "
        "With --history DAYS: write that many days of labelled history (served feature "
        "vectors and ground truth) to Cassandra for training, and the batch features.",
    )
    parser.add_argument("--use-case", help="use case name or .toml path (default: settings)")
    parser.add_argument("--rate", type=float, default=100.0, help="client events per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of traffic")
    parser.add_argument("--drift-at", type=float, help="seconds after the start when drift begins")
    parser.add_argument("--seed", type=int, default=42, help="world and stream seed")
    parser.add_argument("--invalid-rate", type=float, default=0.0, help="share of corrupt events")
    parser.add_argument(
        "--label-delay-factor", type=float, default=1 / 60,
        help="multiplies the spec's label delays (default 1/60: 30 min -> 30 s)",
    )  # fmt: skip
    parser.add_argument("--no-wait-labels", action="store_true", help="do not wait for labels")
    parser.add_argument(
        "--readings-per-event", type=float,
        help="readings per client event (load tests); default: each entity pings every "
        "reading_interval of the spec, whatever the event rate",
    )  # fmt: skip
    parser.add_argument("--run-id", help="prefix of event ids (default: seed and start time)")
    parser.add_argument(
        "--no-prime", action="store_true",
        help="do not first produce the readings of the recent past (the largest window)",
    )  # fmt: skip
    parser.add_argument("--history", type=float, metavar="DAYS", help="write DAYS of history")
    parser.add_argument("--events-per-day", type=int, help="history density (default: spec)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.errors import NoSimulation
    from stream_app.use_cases.deployment import load

    use_case, settings = load(args.use_case, settings)
    if use_case.simulation is None:
        raise NoSimulation(use_case.name, args.use_case or settings.use_case, "simulate")
    if args.history is not None:
        return _history(args, settings, use_case)
    from stream_app.simulation.live import LiveOptions, run_live

    options = LiveOptions(
        rate=args.rate,
        duration_s=args.duration,
        seed=args.seed,
        drift_at_s=args.drift_at,
        invalid_rate=args.invalid_rate,
        label_delay_factor=args.label_delay_factor,
        wait_for_labels=not args.no_wait_labels,
        readings_per_event=args.readings_per_event,
        run_id=args.run_id,
        prime=not args.no_prime,
    )
    report = run_live(settings, use_case, options)
    summary = {
        "run_id": report.run_id,
        "use_case": use_case.name,
        "client_events": report.client_events,
        "client_events_per_s": round(report.client_events / max(report.events_seconds, 1e-9)),
        "records_per_s": round(
            (report.client_events + report.readings) / max(report.events_seconds, 1e-9)
        ),
        "invalid": report.invalid,
        "readings": report.readings,
        "ground_truth": report.ground_truth,
        "unlabelled": report.unlabelled,
        "drifted_events": report.drifted_events,
        "records": report.records,
        "seconds": round(report.seconds, 2),
    }
    print(json.dumps(summary))
    return 0


def _history(args: argparse.Namespace, settings: Settings, use_case: object) -> int:
    from stream_app.cassandra_session import connected
    from stream_app.simulation.backfill import write_history

    with connected(settings.cassandra) as session:
        report = write_history(
            session,
            settings.cassandra.keyspace,
            use_case,  # type: ignore[arg-type]
            days=args.history,
            seed=args.seed,
            home=settings.services.home,
            drift_at_s=args.drift_at,
            events_per_day=args.events_per_day,
        )
    print(json.dumps({"history": report.__dict__}, default=str))
    return 0
