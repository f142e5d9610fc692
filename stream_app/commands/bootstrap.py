"""`stream-app bootstrap`: make sure the use case has a champion, so a worker can start."""

from __future__ import annotations

import argparse
import json
import time

from stream_app.settings import Settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "bootstrap",
        help="train a first champion on simulated history if the use case has none",
        description="Does nothing when a champion exists. Otherwise writes --days of "
        "simulated history (served feature vectors, ground truth, batch features) and trains "
        "the first model on it, which becomes the champion.",
    )
    parser.add_argument("--use-case", help="use case name or .toml path (default: settings)")
    parser.add_argument("--days", type=float, default=3.0, help="days of simulated history")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--events-per-day", type=int, help="history density (default: spec)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.cassandra_session import connected
    from stream_app.errors import ModelNotFound, NoSimulation
    from stream_app.models.registry import ModelRegistry
    from stream_app.models.trainer import train_and_register
    from stream_app.simulation.backfill import write_history
    from stream_app.use_cases.deployment import load

    use_case, settings = load(args.use_case, settings)
    with connected(settings.cassandra) as session:
        registry = ModelRegistry(session, settings.cassandra.keyspace, use_case.name)
        try:
            champion = registry.champion()
        except ModelNotFound:
            pass
        else:
            print(f"champion {champion.version} exists for {use_case.name}; nothing to do")
            return 0
        if use_case.simulation is None:
            raise NoSimulation(use_case.name, args.use_case or settings.use_case,
                               "train a first model on")  # fmt: skip
        history = write_history(
            session, settings.cassandra.keyspace, use_case, args.days, args.seed,
            settings.services.home, events_per_day=args.events_per_day,
        )  # fmt: skip
        now = int(time.time() * 1000)
        outcome = train_and_register(session, settings, use_case, history.start_ms, now + 1)
    print(json.dumps({"version": outcome.model.version, "role": outcome.role,
                      "metrics": outcome.model.metrics}))  # fmt: skip
    return 0
