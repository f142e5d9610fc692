"""`stream-app worker`: the Faust worker with every agent, for one use case or several."""

from __future__ import annotations

import argparse

from stream_app.settings import Settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "worker",
        help="run the Faust worker with every agent",
        description="Serves the settings' use case, or each --use-case given (repeatable): "
        "each with its own topics, consumer groups, models, metrics (label use_case) and "
        "dashboard (/dashboard?use_case=NAME).",
    )
    parser.add_argument(
        "--use-case", action="append", default=[], dest="use_cases", metavar="USE_CASE",
        help="a use case to serve (name or .toml path); repeat for several",
    )  # fmt: skip
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.runtime.run import run_worker

    return run_worker(settings, args.use_cases)
