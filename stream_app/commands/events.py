"""`stream-app events encode FILE...`: rows of a file as the messages of an input topic.

For producing a team's data with any Kafka client: each row of a history or readings file (the
same columns as `history import`) becomes one line ``KEY<TAB>JSON`` of the topic's contract,
in time order, ready for ``kcat -P -K$'\\t' -t TOPIC``. Rows that cannot be used are counted
on stderr with their reasons, never printed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from stream_app.settings import Settings

KINDS = ("client-events", "ground-truth", "sensor-readings")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("events", help="turn a file's rows into input-topic messages")
    actions = parser.add_subparsers(dest="events_command", required=True, metavar="ACTION")
    encode = actions.add_parser(
        "encode",
        help="print KEY<TAB>JSON lines of an input topic (for kcat) from a file's rows",
        description="Rows of a history file (as `history import` reads them) become client "
        "events or ground-truth labels; rows of a readings file become sensor readings. One "
        "line per message, `key<TAB>value`, in time order (labels by label_time). Pipe into "
        "`kcat -P -b BROKERS -t TOPIC -K$'\\t'`; `stream-app spec check` names the topics.",
    )
    encode.add_argument("files", nargs="+", type=Path, metavar="FILE")
    encode.add_argument("--as", dest="kind", required=True, choices=KINDS)
    encode.add_argument("--use-case", help="use case name or .toml path (default: settings)")
    encode.add_argument(
        "--column", action="append", default=[], metavar="NAME=COLUMN",
        help="the file's COLUMN holds NAME (as for `history import`)",
    )  # fmt: skip
    encode.add_argument("--time-unit", choices=["ms", "s"], default="ms")
    encode.add_argument("--since", help="only messages from this time (ISO 8601 or epoch ms)")
    encode.add_argument("--until", help="only messages before this time")
    parser.set_defaults(run=run)


Message = tuple[int, bytes, bytes]  # time, key, value


def run(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.history.rows import ColumnMap, event_names, reading_names
    from stream_app.tabular import read_table
    from stream_app.timeparse import parse_time_ms
    from stream_app.use_cases.deployment import load

    use_case, _ = load(args.use_case, settings)
    reading = args.kind == "sensor-readings"
    names = reading_names(use_case) if reading else event_names(use_case)
    columns = ColumnMap.parse(args.column, names)
    encode = _readings(use_case, columns, args) if reading else _events(use_case, columns, args)
    messages: list[Message] = []
    refused: Counter[str] = Counter()
    rows = 0
    for path in args.files:
        present, table, _ = read_table(path)
        encode.check(present)
        for _, row in table:
            rows += 1
            message = row if isinstance(row, str) else encode.message(row)
            if isinstance(message, str):
                refused[message.split(":")[0]] += 1
            elif message is not None:
                messages.append(message)
    messages.sort(key=lambda m: m[0])
    now = int(time.time() * 1000)
    since = parse_time_ms(args.since, now) if args.since else None
    until = parse_time_ms(args.until, now) if args.until else None
    messages = [m for m in messages if (since is None or m[0] >= since)
                and (until is None or m[0] < until)]  # fmt: skip
    out = sys.stdout.buffer
    for _, key, value in messages:
        out.write(key.replace(b"\t", b" ") + b"\t" + value + b"\n")
    out.flush()
    summary = {"rows": rows, "messages": len(messages), "kind": args.kind,
               "rejected_by_reason": dict(refused)}  # fmt: skip
    print(json.dumps(summary), file=sys.stderr)
    return 0


class _Encoder:
    def __init__(
        self, check: Callable[[Sequence[str]], None], message: Callable[[Any], Message | str | None]
    ) -> None:
        self.check, self.message = check, message


def _readings(use_case: Any, columns: Any, args: argparse.Namespace) -> _Encoder:
    import orjson

    from stream_app.history.rows import ReadingRows

    rows = ReadingRows(use_case, columns, args.time_unit)

    def message(row: Any) -> Message | str:
        parsed = rows.parse(row)
        if isinstance(parsed, str):
            return parsed
        value = orjson.dumps({"schema_version": 1, **parsed._asdict()})
        return parsed.event_time, parsed.sensor_id.encode(), value

    return _Encoder(rows.check_columns, message)


def _events(use_case: Any, columns: Any, args: argparse.Namespace) -> _Encoder:
    import orjson

    from stream_app.history.rows import EventRows

    rows = EventRows(use_case, columns, args.time_unit)
    labels = args.kind == "ground-truth"

    def message(row: Any) -> Message | str | None:
        parsed = rows.parse(row)
        if isinstance(parsed, str):
            return parsed
        if labels:
            if parsed.label is None:
                return None  # an unlabelled event has no ground truth to send
            label = parsed.label
            value = orjson.dumps({"schema_version": 1, **label._asdict()})
            return label.label_time, label.event_id.encode(), value
        event = parsed.event
        value = orjson.dumps({"schema_version": 1, **event._asdict()})
        return event.event_time, event.event_id.encode(), value

    return _Encoder(rows.check_columns, message)
