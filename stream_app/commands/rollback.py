"""`stream-app rollback [--to VERSION]`: restore the previous champion in every worker."""

from __future__ import annotations

import argparse
import json

from stream_app.settings import Settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "rollback",
        help="restore the previous champion in every worker",
        description="Makes the champion before the current one (from the role history), or "
        "--to VERSION, the champion again; announced on model-updates like a promotion.",
    )
    parser.add_argument("--to", help="a version to restore instead of the previous champion")
    parser.add_argument("--reason", default="stream-app rollback", help="recorded with it")
    parser.add_argument("--use-case", help="use case name or .toml path (default: settings)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.cassandra_session import connected
    from stream_app.commands.promote import lifecycle_for
    from stream_app.use_cases.deployment import load

    use_case, settings = load(args.use_case, settings)
    with connected(settings.cassandra) as session:
        change = lifecycle_for(settings, use_case.name, session).rollback(args.reason, args.to)
    print(json.dumps({"changes": [change.__dict__]}))
    return 0
