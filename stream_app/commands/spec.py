"""`stream-app spec check SPEC` and `stream-app spec new NAME`: write and validate a use case."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from stream_app.errors import ConfigurationError
from stream_app.settings import Settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("spec", help="check a use-case spec, or write a new one")
    specs = parser.add_subparsers(dest="spec_command", required=True, metavar="ACTION")
    check = specs.add_parser(
        "check",
        help="validate a spec and say what the system will do with it",
        description="Validates the spec (errors name the key and the reason) and prints its "
        "features by source, windows, label join and delay, missing-feature policy, metrics, "
        "topics and consumer groups, and an example of each input message.",
    )
    check.add_argument("spec", help="use case name or .toml path")
    check.add_argument("--json", action="store_true", help="the same as JSON")
    new = specs.add_parser(
        "new",
        help="write a commented template spec",
        description="Writes NAME.toml (or --out) with every key explained and one feature of "
        "each kind; edit it, then `stream-app spec check NAME.toml`.",
    )
    new.add_argument("name", help="the use case's name (lower_snake_case)")
    new.add_argument(
        "--task", choices=["binary_classification", "regression"],
        default="binary_classification",
    )  # fmt: skip
    new.add_argument("--out", type=Path, help="file to write (default: NAME.toml)")
    new.add_argument("--force", action="store_true", help="overwrite an existing file")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.spec_command == "new":
        return _new(args)
    from stream_app.use_cases.deployment import load
    from stream_app.use_cases.describe import plan, render

    use_case, settings = load(args.spec, settings)
    described = plan(use_case, settings)
    print(json.dumps(described, indent=2) if args.json else render(described))
    return 0


def _new(args: argparse.Namespace) -> int:
    from stream_app.use_cases.spec import load_use_case
    from stream_app.use_cases.template import render_template

    if not re.fullmatch(r"[a-z][a-z0-9_]*", args.name):
        raise ConfigurationError(f"{args.name!r}: a use case name is lower_snake_case")
    path: Path = args.out or Path(f"{args.name}.toml")
    if path.exists() and not args.force:
        raise ConfigurationError(f"{path} exists; pass --force to overwrite it")
    path.write_text(render_template(args.name, args.task, str(path)))
    load_use_case(str(path))  # the template is a valid spec
    print(f"wrote {path}: edit it, then `stream-app spec check {path}`")
    return 0
