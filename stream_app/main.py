"""The `stream-app` command line: the one entry point that builds the settings."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from pydantic import ValidationError
from pydantic_settings import SettingsError

from stream_app.commands import (
    bench,
    bootstrap,
    config,
    evaluate,
    events,
    features,
    history,
    init,
    models,
    promote,
    replay,
    rollback,
    services,
    simulate,
    spec,
    status,
    tail,
    train,
    worker,
)
from stream_app.errors import StreamAppError
from stream_app.settings import Settings, invalid_settings, load_settings

Command = Callable[[argparse.Namespace, Settings], int]
COMMANDS = (
    services, init, bootstrap, worker, simulate, features, history, events, train, evaluate,
    promote, rollback, models, replay, tail, status, bench, spec, config,
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(
        prog="stream-app",
        description="Kafka-driven streaming inference with real-time features in Cassandra.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, build the settings once, run the command."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        if settings.kafka.client_properties:
            from stream_app.kafka.admin import check_client_properties

            check_client_properties(settings.kafka)
    except ValidationError as exc:
        print(f"stream-app: invalid settings:\n{invalid_settings(exc)}", file=sys.stderr)
        return 2
    except (StreamAppError, SettingsError) as exc:
        cause = exc.__cause__ if isinstance(exc, SettingsError) else None  # JSON's: no value
        reason = f"{exc}: {cause}" if cause else str(exc)
        print(f"stream-app: invalid settings:\n{reason}", file=sys.stderr)
        return 2
    run: Command = args.run
    try:
        return run(args, settings)
    except StreamAppError as exc:
        print(f"stream-app: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 1))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the output's reader went away (`| head`): nothing more to say
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (Python flushes it at exit)
        return 0
    except Exception as exc:
        from stream_app.cassandra_session import connection_failure

        message = connection_failure(exc)
        if message is None:
            raise
        print(f"stream-app: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
