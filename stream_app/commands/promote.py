"""`stream-app promote VERSION [--role R] [--traffic F]`: give a version a role everywhere."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from stream_app.errors import StreamAppError
from stream_app.settings import Settings

if TYPE_CHECKING:
    from cassandra.cluster import Session

    from stream_app.models.roles import Roles


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "promote",
        help="make a version the champion (or the challenger / shadow); every worker swaps",
        description="Writes the role to the registry, announces it on model-updates (every "
        "worker loads the version in the background and switches at a batch boundary) and "
        "records the decision on model-decisions. --role challenger --traffic 0.1 sends 10% "
        "of live traffic (a stable hash of the use case's split key) to it; repeated for "
        "other versions, it adds challengers beside it (A/B/N: challenger-2, challenger-3, "
        "..., each tracked apart; shares sum to at most 1, the champion takes the rest). "
        "--role shadow scores every event again, published on the shadow topic only. "
        "--clear --role challenger [VERSION] clears every challenger (or VERSION's slot).",
    )
    parser.add_argument("version", nargs="?", help="registry version (see `stream-app models`)")
    parser.add_argument(
        "--clear", action="store_true",
        help="challenger / shadow: clear the role (with VERSION: only the slot it holds)",
    )  # fmt: skip
    parser.add_argument("--role", choices=["champion", "challenger", "shadow"],
                        default="champion")  # fmt: skip
    parser.add_argument("--traffic", type=float, help="challenger only: share of live traffic")
    parser.add_argument("--reason", default="stream-app promote", help="recorded with the change")
    parser.add_argument("--use-case", help="use case name or .toml path (default: settings)")
    parser.set_defaults(run=run)


def lifecycle_for(settings: Settings, use_case_name: str, session: Session) -> Roles:
    """Role changes decided by a person at the command line."""
    from stream_app.models.registry import ModelRegistry
    from stream_app.models.roles import Roles, actor

    registry = ModelRegistry(session, settings.cassandra.keyspace, use_case_name)
    return Roles(registry, settings.kafka, actor("cli"))


def run(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.cassandra_session import connected
    from stream_app.use_cases.deployment import load

    use_case, settings = load(args.use_case, settings)
    with connected(settings.cassandra) as session:
        lifecycle = lifecycle_for(settings, use_case.name, session)
        if not args.clear and not args.version:
            raise StreamAppError("name a VERSION, or --clear a challenger or shadow role")
        if args.role == "champion":
            if args.traffic is not None or args.clear:
                raise StreamAppError("--traffic and --clear are for the challenger or shadow")
            changes = lifecycle.promote(args.version, args.reason)
        elif args.clear:
            if args.traffic is not None:
                raise StreamAppError("--traffic does not go with --clear")
            changes = lifecycle.clear(args.role, args.version, args.reason)
        else:
            changes = [lifecycle.assign(args.role, args.version, args.reason, args.traffic)]
    print(json.dumps({"changes": [c.__dict__ for c in changes]}))
    return 0
