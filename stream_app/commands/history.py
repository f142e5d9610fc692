"""`stream-app history import FILE...`: labelled past events (and readings) for training."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from stream_app.settings import Settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("history", help="import a use case's labelled history")
    actions = parser.add_subparsers(dest="history_command", required=True, metavar="ACTION")
    imports = actions.add_parser(
        "import",
        help="labelled past events (CSV, JSONL or Parquet) become training data",
        description="Each row is a past client event: event_id, event_time, the entity keys, "
        "the event fields and the label (named as in the spec; --column renames), with an "
        "optional label_time. Aggregate features are computed point in time from --readings "
        "(event_time, entity keys, reading values) by the code the feature agent runs live; "
        "batch features are the versions `features load --as-of` stored before each event. "
        "Rejected rows are reported by reason with their line; importing the same files "
        "again adds nothing. Prints a JSON summary; then run the `train` it suggests.",
    )
    imports.add_argument("files", nargs="+", type=Path, metavar="FILE")
    imports.add_argument("--use-case", help="use case name or .toml path (default: settings)")
    imports.add_argument(
        "--readings", type=Path, action="append", default=[], metavar="FILE",
        help="past sensor readings behind the aggregate features (repeatable)",
    )  # fmt: skip
    imports.add_argument(
        "--column", action="append", default=[], metavar="NAME=COLUMN",
        help="the events file's COLUMN holds NAME (event_id, event_time, an entity key, an "
        "event field, the label, label_time)",
    )  # fmt: skip
    imports.add_argument(
        "--readings-column", action="append", default=[], metavar="NAME=COLUMN",
        help="the readings file's COLUMN holds NAME (event_time, sensor_id, an entity key, a "
        "reading)",
    )  # fmt: skip
    imports.add_argument(
        "--time-unit", choices=["ms", "s"], default="ms",
        help="unit of numeric times since the epoch (text times are ISO 8601)",
    )  # fmt: skip
    imports.add_argument("--force", action="store_true", help="import files imported before")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.cassandra_session import connected
    from stream_app.history.importer import import_history
    from stream_app.history.rows import ColumnMap, event_names, reading_names
    from stream_app.use_cases.deployment import load

    use_case, settings = load(args.use_case, settings)
    columns = ColumnMap.parse(args.column, event_names(use_case))
    reading_columns = ColumnMap.parse(args.readings_column, reading_names(use_case))
    with connected(settings.cassandra) as session:
        report = import_history(
            session, settings.cassandra.keyspace, use_case, args.files, args.readings,
            columns, reading_columns, args.time_unit, args.force,
        )  # fmt: skip
    summary = report.summary(args.use_case or settings.use_case)
    print(json.dumps(summary, indent=2))
    if report.already_imported_at is not None:
        print(f"stream-app: these files were imported already at "
              f"{summary['already_imported_at']}; nothing added (--force to import them "
              "again)", file=sys.stderr)  # fmt: skip
    return 0
