"""`stream-app features load|get`: batch feature loads and point-in-time lookups."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from stream_app.settings import Settings

if TYPE_CHECKING:
    from cassandra.cluster import Session

    from stream_app.use_cases.spec import UseCase


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("features", help="load batch features; look features up")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    load = actions.add_parser(
        "load",
        help="load batch features from a CSV, JSONL or Parquet file",
        description="One entity key column and batch-feature columns of that entity. Rows "
        "that cannot be loaded are reported (line and reason); --rejects writes them out.",
    )
    load.add_argument("file", type=Path)
    load.add_argument("--use-case", help="use case name or .toml path (default: settings)")
    load.add_argument("--as-of", help="when the values became valid (default: now)")
    load.add_argument("--rejects", type=Path, help="write rejected rows here as JSONL")
    get = actions.add_parser(
        "get",
        help="an entity's features now, or as of a time (point-in-time)",
        description="ENTITY is key=id, e.g. courier_id=courier-17 (several allowed).",
    )
    get.add_argument("entity", nargs="+")
    get.add_argument("--use-case", help="use case name or .toml path (default: settings)")
    get.add_argument("--as-of", help="a past time (ISO 8601, epoch ms, or 90m ago)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.cassandra_session import connected
    from stream_app.errors import ConfigurationError
    from stream_app.timeparse import parse_time_ms
    from stream_app.use_cases.deployment import load

    use_case, settings = load(args.use_case, settings)
    now = int(time.time() * 1000)
    with connected(settings.cassandra) as session:
        if args.action == "load":
            from stream_app.features.batch_load import load_batch_features

            if not args.file.exists():
                raise ConfigurationError(f"{args.file} does not exist")
            as_of = parse_time_ms(args.as_of, now) if args.as_of else now
            report = load_batch_features(
                session, settings.cassandra.keyspace, use_case, args.file, as_of
            )
            if args.rejects:
                with args.rejects.open("wb") as out:
                    for r in report.rejected:
                        line = {"line": r.line, "reason": r.reason, "row": r.row}
                        out.write(json.dumps(line, default=str).encode() + b"\n")
            print(json.dumps(report.summary()))
            return 0
        return _get(args, settings, session, use_case, now)


def _get(
    args: argparse.Namespace, settings: Settings, session: Session, use_case: UseCase, now: int
) -> int:
    from stream_app.errors import ConfigurationError
    from stream_app.features.pane_store import PaneStore
    from stream_app.features.store import CassandraFeatureStore
    from stream_app.timeparse import format_ms, parse_time_ms

    entities = []
    for item in args.entity:
        key, sep, entity_id = item.partition("=")
        if not sep or not entity_id:
            raise ConfigurationError(
                f"{item!r}: write an entity as key=id, e.g. courier_id=courier-17"
            )
        entities.append((key, entity_id))
    keyspace = settings.cassandra.keyspace
    retention_s = int(settings.features.retention_days * 86_400)
    panes = PaneStore(session, keyspace, use_case.name, retention_s)
    store = CassandraFeatureStore(session, keyspace, use_case, panes)
    at = parse_time_ms(args.as_of, now) if args.as_of else now
    lookup = store.as_of(entities, at) if args.as_of else store.read_entities(entities, at)
    found = asyncio.run(lookup)
    print(json.dumps({
        "as_of": format_ms(at),
        "point_in_time": bool(args.as_of),
        "entities": {
            f"{k}={i}": {name: {"value": f.value, "event_time": format_ms(f.event_time)}
                         for name, f in sorted(found.get((k, i), {}).items())}
            for k, i in entities
        },
    }, indent=2))  # fmt: skip
    return 0
