"""`stream-app worker`: the Faust worker with every agent."""

from __future__ import annotations

import argparse

from stream_app.settings import Settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("worker", help="run the Faust worker with every agent")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.worker import run_worker

    return run_worker(settings)
