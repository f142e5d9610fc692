"""`stream-app replay`: backtest a time range of a topic with model versions, or re-inject
dead-lettered records that now validate. Never writes a production topic or consumer group."""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stream_app.settings import Settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "replay",
        help="score a time range of a topic with a model version (and compare with another)",
        description="Reads [--from, --to) of a topic (offsets from the brokers' time index) "
        "with a consumer of its own that commits nothing, scores every client event with "
        "--model (and --compare), from the feature vectors production served where they were "
        "logged and point-in-time lookups otherwise, joins the labels, and writes a report "
        "(report.json and report.html with plots) to --out/<run id>/. Production topics, "
        "consumer groups and tables are never written. With --topic dead-letter --reprocess, "
        "re-injects dead-lettered records that now validate into their source topic, once.",
    )
    parser.add_argument(
        "--from",
        dest="start",
        help="start of the range: ISO 8601, epoch ms, or a duration ago (90m); "
        "default with --reprocess: the beginning",
    )
    parser.add_argument("--to", dest="end", help="end of the range (excluded; default: now)")
    parser.add_argument("--topic", help="the topic to replay (default: the client events topic)")
    parser.add_argument(
        "--model", help="version to score with, or a role (champion, challenger, shadow)"
    )
    parser.add_argument("--compare", help="a second version (or role) scored on the same events")
    parser.add_argument("--out", type=Path, help="report folder (default: settings.replay.out_dir)")
    parser.add_argument(
        "--publish",
        action="store_true",
        help="also publish the replayed predictions to replay.<run id>.predictions",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan; read nothing")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--reprocess",
        action="store_true",
        help="with --topic dead-letter: re-inject records that now validate into their source",
    )
    parser.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --reprocess: code=..., source=... or agent=... (repeat to widen)",
    )
    parser.add_argument("--use-case", help="use case name or .toml path (default: settings)")
    parser.set_defaults(run=run)


def new_run_id(now_ms: int) -> str:
    """A sortable, unique run id: ``<UTC time>-<6 hex>``."""
    return f"{datetime.fromtimestamp(now_ms / 1000, UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def render_plan(plan: dict[str, Any]) -> str:
    """The dry run's plan as a table."""
    from stream_app.timeparse import format_ms

    lines = [
        f"replay plan for {plan['topic']}: {format_ms(plan['from'])} -> {format_ms(plan['to'])}",
        f"{'partition':>9} {'start':>12} {'end':>12} {'messages':>10}",
    ]
    for p in plan["partitions"]:
        lines.append(f"{p['partition']:>9} {p['start']:>12} {p['end']:>12} {p['messages']:>10,}")
    lines.append(f"{'total':>9} {'':>12} {'':>12} {plan['messages']:>10,}")
    if "estimate_s" in plan:
        lines.append(f"estimated time: {plan['estimate_s']} s (at the assumed {plan['rate']:,.0f}"
                     " events/s, settings.replay.expected_rate)")  # fmt: skip
    return "\n".join(lines)


def render_report(report: Mapping[str, Any], folder: Path) -> str:
    """A summary of the report for the terminal."""
    events, features = report["events"], report["features"]
    lines = [
        f"replayed {events['messages']:,} records of {report['topic']}: {events['scored']:,} "
        f"scored ({features['served']:,} from served vectors, {features['point_in_time']:,} "
        f"point-in-time), {events['labelled']:,} labelled, invalid {events['invalid'] or 0}",
    ]
    for version in report["versions"]:
        metrics = ", ".join(
            f"{k} {v:.4g}" for k, v in version["metrics"].items() if v is not None
        )  # fmt: skip
        lines.append(f"  {version['version']}: {metrics or 'no labels'}")
        production = version["production"]
        if production:
            lines.append(
                f"    production: {production['identical']:,} of {production['compared']:,} "
                f"identical (max difference {production['max_abs_difference']:.3g})"
            )
    winner = report["winner"]
    if winner:
        lines.append(f"better: {winner['version'] or 'neither'}")
        lines += [f"  - {reason}" for reason in winner["reasons"]]
    timing = report["timing"]
    lines.append(f"{timing['seconds']} s ({timing['events_per_s']:,} records/s)")
    lines.append(f"report: {folder / 'report.html'} and {folder / 'report.json'}")
    return "\n".join(lines)


def _resolve(registry: Any, name: str) -> str:
    """A role name stands for the version holding it."""
    from stream_app.errors import ModelNotFound
    from stream_app.models.registry import ROLES

    if name in ROLES:
        held = registry.roles().get(name)
        if held is None:
            raise ModelNotFound(f"no version holds the {name} role")
        return str(held.version)
    return name


def run(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.errors import ConfigurationError
    from stream_app.replay.plan import plan_replay
    from stream_app.timeparse import parse_time_ms

    topics = settings.kafka.topics
    topic = args.topic or topics.client_events
    now = int(time.time() * 1000)
    if args.reprocess != (topic == topics.dead_letter):
        raise ConfigurationError(
            "--reprocess goes with --topic " + topics.dead_letter
            if args.reprocess
            else f"{topic} holds dead letters: replay it with --reprocess"
        )
    if args.filter and not args.reprocess:
        raise ConfigurationError("--filter goes with --reprocess")
    start = parse_time_ms(args.start, now) if args.start else (0 if args.reprocess else None)
    if start is None:
        raise ConfigurationError("--from is needed: the start of the range to replay")
    end = parse_time_ms(args.end, now) if args.end else now
    if not args.reprocess and not args.model:
        raise ConfigurationError("--model is needed: the version (or role) to score with")
    plan = plan_replay(settings.kafka, topic, start, end)
    if args.dry_run and not args.reprocess:
        shown = {
            **plan.as_dict(settings.replay.expected_rate),
            "rate": settings.replay.expected_rate,
        }
        print(json.dumps(shown) if args.json else render_plan(shown))
        return 0
    run_id = new_run_id(now)
    if args.reprocess:
        return _reprocess(args, settings, plan, run_id)
    return _backtest(args, settings, plan, run_id)


def _backtest(args: argparse.Namespace, settings: Settings, plan: Any, run_id: str) -> int:
    from stream_app.cassandra_session import connected
    from stream_app.models.registry import ModelRegistry
    from stream_app.progress import ProgressBar
    from stream_app.replay.backtest import Backtest, ReplayRequest
    from stream_app.replay.html import render_html
    from stream_app.use_cases.deployment import load

    use_case, settings = load(args.use_case, settings)
    folder = (args.out or settings.replay.out_dir) / run_id
    with connected(settings.cassandra) as session:
        registry = ModelRegistry(session, settings.cassandra.keyspace, use_case.name)
        versions = [_resolve(registry, args.model)]
        if args.compare:
            versions.append(_resolve(registry, args.compare))
        request = ReplayRequest(plan, versions, run_id, publish=args.publish)
        backtest = Backtest(settings, session, use_case, request)
        progress = ProgressBar(plan.count)
        try:
            report = backtest.run(progress)
        except KeyboardInterrupt:
            sys.stderr.write("\ninterrupted: no report written, nothing left behind\n")
            raise
        progress.close()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(report, indent=1))
    (folder / "report.html").write_text(render_html(report))
    print(json.dumps(report) if args.json else render_report(report, folder))
    return 0


def _reprocess(args: argparse.Namespace, settings: Settings, plan: Any, run_id: str) -> int:
    from stream_app.cassandra_session import connected
    from stream_app.progress import ProgressBar
    from stream_app.replay.dead_letters import parse_filters, reprocess_dead_letters
    from stream_app.replay.reader import replay_group
    from stream_app.runtime.dependencies import check_schema

    filters = parse_filters(args.filter)
    with connected(settings.cassandra) as session:
        check_schema(session, settings.cassandra.keyspace)
        progress = ProgressBar(plan.count, unit="dead letters")
        outcome = reprocess_dead_letters(
            settings, session, plan, filters, dry_run=args.dry_run,
            group_id=replay_group(run_id), progress=progress,
        )  # fmt: skip
        progress.close()
    result = {"plan": plan.as_dict(), "filters": filters.as_dict(), **outcome.as_dict()}
    print(json.dumps(result, indent=None if args.json else 1))
    return 0
