"""`stream-app init`: topics and keyspace, idempotent."""

from __future__ import annotations

import argparse

from stream_app.settings import Settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "init",
        help="create the topics and the Cassandra keyspace, and register the topics' schemas "
        "when a topic is in the wire format (idempotent)",
        description="Creates the topics of the settings' use case, or of each --use-case "
        "given (each use case's topics carry its prefix), and the keyspace's tables.",
    )
    parser.add_argument(
        "--use-case", action="append", default=[], dest="use_cases", metavar="USE_CASE",
        help="a use case whose topics to create (name or .toml path); repeatable",
    )  # fmt: skip
    parser.add_argument(
        "--register-schemas", action="store_true",
        help="register the topics' schemas in the schema registry (SCHEMA_REGISTRY__URL) even "
        "though every topic is plain JSON (done anyway when one is in the wire format)",
    )  # fmt: skip
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.kafka.schema_registry import Registry, register_shipped
    from stream_app.provisioning.keyspace import ensure_keyspace
    from stream_app.provisioning.topics import ensure_topics
    from stream_app.runtime.dependencies import served_use_cases

    changed = False
    for _, own in served_use_cases(settings, args.use_cases):
        for outcome in ensure_topics(own.kafka):
            note = f" ({outcome.detail})" if outcome.detail else ""
            print(f"topic {outcome.name}: {outcome.action}{note}")
            changed |= outcome.action == "created"
        if settings.schema_registry.in_use or args.register_schemas:  # same schema: same id
            registry = Registry(settings.schema_registry)
            for topic, schema_id in register_shipped(
                registry, own.kafka.topics, settings.schema_registry
            ).items():
                print(f"schema of {topic}: id {schema_id}")
    keyspace = ensure_keyspace(settings.cassandra)
    print(f"keyspace {keyspace.keyspace}: {'created' if keyspace.created_keyspace else 'exists'}")
    for migration in keyspace.applied:
        print(f"schema V{migration.version:03d} {migration.name}: applied")
    changed |= keyspace.created_keyspace or bool(keyspace.applied)
    if not changed:
        print(f"nothing to do: all topics and {keyspace.already_applied} schema versions in place")
    return 0
