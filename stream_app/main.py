"""The `stream-app` command line: the one entry point that builds settings and the app."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from pydantic import ValidationError

from stream_app.errors import StreamAppError
from stream_app.settings import Settings, load_settings

Command = Callable[[argparse.Namespace, Settings], int]


def _services(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.services import control

    if args.action == "up":
        control.up(settings, args.service)
        return 0
    if args.action == "down":
        control.down(settings, args.service)
        return 0
    statuses = control.status(settings, args.service)
    for s in statuses:
        pid = s.pid if s.pid is not None else "-"
        print(f"{s.name:<10} pid {pid!s:<8} port {s.port:<6} ready {s.ready!s:<5} {s.detail}")
    return 0 if all(s.ready for s in statuses) else 1


def _init(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.provisioning.keyspace import ensure_keyspace
    from stream_app.provisioning.topics import ensure_topics

    changed = False
    for outcome in ensure_topics(settings.kafka):
        note = f" ({outcome.detail})" if outcome.detail else ""
        print(f"topic {outcome.name}: {outcome.action}{note}")
        changed |= outcome.action == "created"
    keyspace = ensure_keyspace(settings.cassandra)
    if keyspace.created_keyspace:
        print(f"keyspace {keyspace.keyspace}: created")
    else:
        print(f"keyspace {keyspace.keyspace}: exists")
    for migration in keyspace.applied:
        print(f"schema V{migration.version:03d} {migration.name}: applied")
    changed |= keyspace.created_keyspace or bool(keyspace.applied)
    if not changed:
        print(f"nothing to do: all topics and {keyspace.already_applied} schema versions in place")
    return 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.worker import run_worker

    return run_worker(settings)


def _config(args: argparse.Namespace, settings: Settings) -> int:
    print(json.dumps(settings.masked(), indent=2))
    return 0


def _service_name(value: str) -> str:
    if value not in ("kafka", "cassandra"):
        raise argparse.ArgumentTypeError(f"{value!r} is not a service (kafka, cassandra)")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(
        prog="stream-app",
        description="Kafka-driven streaming inference with real-time features in Cassandra.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    services = sub.add_parser("services", help="run the local Kafka and Cassandra (JVMs)")
    services.add_argument("action", choices=["up", "down", "status"])
    services.add_argument(
        "service", nargs="*", type=_service_name, help="kafka and/or cassandra (default: both)"
    )
    services.set_defaults(run=_services)

    init = sub.add_parser("init", help="create the topics and the Cassandra keyspace (idempotent)")
    init.set_defaults(run=_init)

    worker = sub.add_parser("worker", help="run the Faust worker with every agent")
    worker.set_defaults(run=_worker)

    config = sub.add_parser("config", help="print the effective settings (secrets masked)")
    config.set_defaults(run=_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, build the settings once, run the command."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except (ValidationError, StreamAppError) as exc:
        print(f"stream-app: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    run: Command = args.run
    try:
        return run(args, settings)
    except StreamAppError as exc:
        print(f"stream-app: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
