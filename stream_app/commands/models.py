"""`stream-app models`: versions, roles, metrics and lineage from the registry."""

from __future__ import annotations

import argparse
import json
from typing import Any

from stream_app.settings import Settings
from stream_app.timeparse import format_ms


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "models",
        help="model versions, their roles, metrics and lineage",
        description="Every registered version (oldest first) with its role, status, parent, "
        "training window, validation metrics and latest evaluation, then the latest role changes.",
    )
    parser.add_argument("--use-case", help="use case name or .toml path (default: settings)")
    parser.add_argument("--history", type=int, default=10, help="role changes to show")
    parser.add_argument("--json", action="store_true", help="print everything as JSON")
    parser.set_defaults(run=run)


def listing(registry: Any, history: int) -> dict[str, Any]:
    """The registry's versions, roles and role history, JSON-ready."""
    roles = registry.roles()
    held: dict[str, list[str]] = {}
    for role, assignment in roles.items():
        held.setdefault(assignment.version, []).append(role)
    evaluations = registry.evaluations()
    versions = []
    for model in registry.versions():
        window = model.training_window
        versions.append(
            {
                "version": model.version,
                "created_at": model.created_at,
                "roles": sorted(held.get(model.version, [])),
                "status": model.status,
                "parent": model.parent_version,
                "features": len(model.feature_names),
                "spec_hash": model.spec_hash[:12],
                "training_window": {
                    k: window.get(k)
                    for k in ("since", "until", "labelled_rows", "train_rows", "validation_rows")
                    if k in window
                },
                "validation": model.metrics.get("validation", {}),
                "evaluations": [_evaluation_summary(e) for e in evaluations.get(model.version, [])],
            }
        )
    return {
        "use_case": registry.use_case,
        "roles": {
            r: {
                "version": a.version,
                "traffic_fraction": a.traffic_fraction,
                "reason": a.reason,
                "assigned_at": a.assigned_at,
            }
            for r, a in roles.items()
        },
        "versions": versions,
        "history": registry.role_history(limit=history),
    }


def _evaluation_summary(evaluation: dict[str, Any]) -> dict[str, Any]:
    metric = evaluation["metric"]
    metrics = evaluation.get("metrics") or {}
    decision = evaluation["decision"]
    return {
        "at": evaluation["at"],
        "against": evaluation["against"],
        "metric": metric,
        "against_value": metrics.get("champion", {}).get(metric),
        "value": metrics.get("challenger", {}).get(metric),
        "holdout_rows": evaluation["holdout_rows"],
        "p_value": decision["p_value"],
        "promote": decision["promote"],
    }


def render(data: dict[str, Any]) -> str:
    lines = [f"use case {data['use_case']}"]
    for role, assignment in sorted(data["roles"].items()):
        traffic = assignment["traffic_fraction"]
        share = f" ({traffic:.0%} of traffic)" if traffic else ""
        lines.append(f"  {role:<10} {assignment['version']}{share}")
    lines.append("versions (oldest first):")
    for v in data["versions"]:
        metrics = "  ".join(f"{k} {x:.4g}" for k, x in v["validation"].items())
        window = v["training_window"]
        rows = window.get("labelled_rows")
        span = (
            f"{format_ms(window['since'])} .. {format_ms(window['until'])}"
            if "since" in window and "until" in window
            else "-"
        )
        lines.append(
            f"  {v['version']:<40} {','.join(v['roles']) or v['status']:<20} "
            f"parent {v['parent'] or '-'}"
        )
        lines.append(f"      trained on {rows if rows is not None else '-'} rows {span}")
        if metrics:
            lines.append(f"      validation {metrics}")
        for e in v["evaluations"][:1]:  # the latest
            figures = (
                f"{e['metric']} {e['against_value']:.4g} -> {e['value']:.4g} on "
                f"{e['holdout_rows']} rows, p = {e['p_value']:.3f}"
                if e["value"] is not None
                else "no labelled rows"
            )
            verdict = "promote" if e["promote"] else "keep the champion"
            lines.append(
                f"      evaluated {format_ms(e['at'])} against {e['against']}: {figures}: {verdict}"
            )
    lines.append("role changes (newest first):")
    for change in data["history"]:
        lines.append(
            f"  {format_ms(change['at'])} {change['role']:<10} {change['version'] or '(cleared)'}"
            f" <- {change['previous'] or '-'}: {change['reason']}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.cassandra_session import connected
    from stream_app.models.registry import ModelRegistry
    from stream_app.use_cases.spec import load_use_case

    use_case = load_use_case(args.use_case or settings.use_case)
    with connected(settings.cassandra) as session:
        data = listing(ModelRegistry(session, settings.cassandra.keyspace, use_case.name),
                       args.history)  # fmt: skip
    print(json.dumps(data) if args.json else render(data))
    return 0
