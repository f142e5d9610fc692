"""`stream-app train [--since T] [--until T]`: train and register a model version."""

from __future__ import annotations

import argparse
import json
import time

from stream_app.settings import Settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "train",
        help="train a model on served features + ground truth and register it",
        description="The first model of a use case becomes its champion, later ones the "
        "challenger. Times: ISO 8601, epoch ms, or a duration ago (7d, 90m).",
    )
    parser.add_argument("--use-case", help="use case name or .toml path (default: settings)")
    parser.add_argument("--since", help="start of the window (default: training.window_days ago)")
    parser.add_argument("--until", help="end of the window (default: now)")
    parser.add_argument(
        "--trigger", default="manual", choices=["manual", "degradation", "drift", "schedule"],
        help="why it is trained (recorded; the orchestrator passes its trigger)",
    )  # fmt: skip
    parser.add_argument(
        "--regime-since", type=int, metavar="MS",
        help="epoch ms where the current regime began (a change point; recorded, so later "
        "retrainings do not reach back before it)",
    )  # fmt: skip
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.cassandra_session import connected
    from stream_app.models.trainer import train_and_register
    from stream_app.timeparse import parse_time_ms
    from stream_app.use_cases.deployment import load

    use_case, settings = load(args.use_case, settings)
    now = int(time.time() * 1000)
    since = (
        parse_time_ms(args.since, now)
        if args.since
        else now - int(settings.training.window_days * 86_400_000)
    )
    until = parse_time_ms(args.until, now) if args.until else now + 1
    with connected(settings.cassandra) as session:
        outcome = train_and_register(
            session,
            settings,
            use_case,
            since,
            until,
            trigger=args.trigger,
            regime_since=args.regime_since,
        )
    model = outcome.model
    print(
        json.dumps(
            {
                "version": model.version,
                "role": outcome.role,
                "parent": model.parent_version,
                "training_window": model.training_window,
                "metrics": model.metrics,
            }
        )
    )
    return 0
