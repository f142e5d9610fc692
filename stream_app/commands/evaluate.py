"""`stream-app evaluate CHALLENGER [--against VERSION]`: both on the same labelled holdout."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from stream_app.settings import Settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "evaluate",
        help="a challenger against the champion on the same recent labelled rows, and a verdict",
        description="Scores the labelled, served feature vectors since both versions' training "
        "splits with each version; prints metrics side by side, scoring latency, and the "
        "decision of the policy in settings.lifecycle (min_samples, min_improvement, a paired "
        "bootstrap at significance). Exit code 0 whether or not it would promote.",
    )
    parser.add_argument("challenger", help="the version to judge")
    parser.add_argument("--against", help="the version to compare with (default: the champion)")
    parser.add_argument("--use-case", help="use case name or .toml path (default: settings)")
    parser.add_argument("--json", action="store_true", help="print the evaluation as JSON")
    parser.set_defaults(run=run)


def render(result: dict[str, Any]) -> str:
    """The evaluation as a side-by-side table and the verdict with its reasons."""
    metrics, latency, decision = result["metrics"], result["latency"], result["decision"]
    lines = [
        f"challenger {result['challenger']} vs champion {result['champion']}",
        f"holdout: {result['holdout_rows']:,} labelled rows (primary metric {result['metric']})",
    ]
    if metrics:
        names = list(metrics["champion"])
        lines.append(f"{'metric':<18}{'champion':>14}{'challenger':>14}")
        for name in names:
            lines.append(
                f"{name:<18}{metrics['champion'][name]:>14.4g}{metrics['challenger'][name]:>14.4g}"
            )
        for key in ("batch_us_per_row", "single_row_us"):
            lines.append(
                f"{key:<18}{latency['champion'][key]:>14.4g}{latency['challenger'][key]:>14.4g}"
            )
    verdict = "PROMOTE" if decision["promote"] else "KEEP THE CHAMPION"
    lines.append(f"decision: {verdict}")
    lines += [f"  - {reason}" for reason in decision["reasons"]]
    return "\n".join(lines)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.cassandra_session import connected
    from stream_app.models.evaluation import evaluate
    from stream_app.use_cases.deployment import load

    use_case, settings = load(args.use_case, settings)
    sys.stderr.write("scoring the holdout with both versions...\n")
    with connected(settings.cassandra) as session:
        result = evaluate(session, settings, use_case, args.challenger, args.against).as_dict()
    print(json.dumps(result) if args.json else render(result))
    return 0
