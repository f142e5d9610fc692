"""`stream-app init`: topics and keyspace, idempotent."""

from __future__ import annotations

import argparse

from stream_app.settings import Settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "init", help="create the topics and the Cassandra keyspace (idempotent)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.provisioning.keyspace import ensure_keyspace
    from stream_app.provisioning.topics import ensure_topics

    changed = False
    for outcome in ensure_topics(settings.kafka):
        note = f" ({outcome.detail})" if outcome.detail else ""
        print(f"topic {outcome.name}: {outcome.action}{note}")
        changed |= outcome.action == "created"
    keyspace = ensure_keyspace(settings.cassandra)
    print(f"keyspace {keyspace.keyspace}: {'created' if keyspace.created_keyspace else 'exists'}")
    for migration in keyspace.applied:
        print(f"schema V{migration.version:03d} {migration.name}: applied")
    changed |= keyspace.created_keyspace or bool(keyspace.applied)
    if not changed:
        print(f"nothing to do: all topics and {keyspace.already_applied} schema versions in place")
    return 0
