"""`stream-app models`: versions, roles, metrics and lineage from the registry."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
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
    actions = parser.add_subparsers(dest="models_command", metavar="[import]")
    imports = actions.add_parser(
        "import",
        help="register a LightGBM model trained elsewhere (text or JSON file)",
        description="Registers MODEL_FILE (LightGBM text, Booster.save_model, or JSON, "
        "Booster.dump_model) as a version of the use case. Its objective must fit the task "
        "and its features must be the spec's, in the spec's column order (a mismatch is "
        "refused, naming them). Validation metrics come from stored labelled rows of "
        "--since/--until (default: the training window) where there are any; so do its "
        "calibration map (binary) and its loss models (DLE, regression), so give a range the "
        "model was not trained on. The first "
        "version becomes champion, later ones challenger, unless --role says otherwise.",
    )
    imports.add_argument("model_file", type=Path, metavar="MODEL_FILE")
    imports.add_argument("--use-case", help="use case name or .toml path (default: settings)")
    imports.add_argument("--role", choices=["champion", "challenger", "shadow"])
    imports.add_argument("--since", help="validation rows from (default: training.window_days)")
    imports.add_argument("--until", help="validation rows until (default: now)")
    imports.add_argument(
        "--assume-spec-order", action="store_true",
        help="take a model whose columns are unnamed (Column_0, ...) as in the spec's order",
    )  # fmt: skip
    imports.add_argument("--reason", default="imported", help="recorded with the role change")
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
    if getattr(args, "models_command", None) == "import":
        return import_model(args, settings)
    from stream_app.cassandra_session import connected
    from stream_app.models.registry import ModelRegistry
    from stream_app.use_cases.deployment import load

    use_case, settings = load(args.use_case, settings)
    with connected(settings.cassandra) as session:
        data = listing(ModelRegistry(session, settings.cassandra.keyspace, use_case.name),
                       args.history)  # fmt: skip
    print(json.dumps(data) if args.json else render(data))
    return 0


def import_model(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.cassandra_session import connected
    from stream_app.commands.promote import lifecycle_for
    from stream_app.errors import ModelNotFound
    from stream_app.models import importing
    from stream_app.models.lgb import lgb
    from stream_app.models.registry import ModelRegistry
    from stream_app.models.training import load_training_set
    from stream_app.storage.ground_truth import GroundTruthStore
    from stream_app.storage.predictions import PredictionStore
    from stream_app.timeparse import parse_time_ms
    from stream_app.use_cases.deployment import load

    use_case, settings = load(args.use_case, settings)
    model = importing.read_model_file(args.model_file)
    importing.check_task(model, use_case)
    text = importing.aligned_text(model, use_case, args.assume_spec_order)
    now = int(time.time() * 1000)
    since = (parse_time_ms(args.since, now) if args.since
             else now - int(settings.training.window_days * 86_400_000))  # fmt: skip
    until = parse_time_ms(args.until, now) if args.until else now + 1
    keyspace = settings.cassandra.keyspace
    with connected(settings.cassandra) as session:
        registry = ModelRegistry(session, keyspace, use_case.name)
        rows = load_training_set(
            PredictionStore(session, keyspace, use_case.name),
            GroundTruthStore(session, keyspace, use_case.name),
            use_case.feature_names, since, until,
        )  # fmt: skip
        metrics, distributions, held_out = importing.validation(
            lgb.Booster(model_str=text), rows, use_case, since, until, settings.training.seed
        )
        try:
            parent: str | None = registry.champion().version
        except ModelNotFound:
            parent = None
        version = importing.describe_import(model, use_case, metrics, distributions, parent,
                                            held_out)  # fmt: skip
        registry.register(version, text, held_out.loss_models if held_out else None)
        role = args.role or ("challenger" if parent else "champion")
        lifecycle = lifecycle_for(settings, use_case.name, session)
        reason = f"{args.reason}: {model.path.name}"
        if role == "champion":
            lifecycle.promote(version.version, reason)
        else:
            lifecycle.assign(role, version.version, reason)
    print(json.dumps({"version": version.version, "role": role, "metrics": metrics,
                      "file": str(model.path), "sha256": model.sha256}))  # fmt: skip
    return 0
