"""`stream-app tail TOPIC`: print a topic's records as they arrive (or from the start)."""

from __future__ import annotations

import argparse
import signal
import sys
import uuid

from stream_app.settings import Settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "tail",
        help="print a topic's records (predictions, dead-letter, ...)",
        description="TOPIC is a topic name or a role from the settings (client_events, "
        "predictions, dead_letter, ...). Reads with a throw-away consumer group: it never "
        "moves any other group's offsets.",
    )
    parser.add_argument("topic")
    parser.add_argument("--from-beginning", action="store_true", help="start at the oldest record")
    parser.add_argument("--max", type=int, help="stop after this many records")
    parser.add_argument("--keys", action="store_true", help="print the key before each value")
    parser.add_argument(
        "--use-case", help="whose topic a role names (name or .toml path; default: settings)"
    )
    parser.set_defaults(run=run)


def resolve_topic(settings: Settings, name: str) -> str:
    """A topic role (``predictions``, ``dead-letter``) or a literal topic name."""
    roles = settings.kafka.topics.model_dump()
    return str(roles.get(name.replace("-", "_"), name))


def run(args: argparse.Namespace, settings: Settings) -> int:
    from confluent_kafka import Consumer, KafkaError

    from stream_app.contracts.wire import json_text
    from stream_app.use_cases.deployment import load

    _, settings = load(args.use_case, settings)
    topic = resolve_topic(settings, args.topic)
    consumer = Consumer(
        settings.kafka.client_config(
            {
                "group.id": f"stream-app-tail-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest" if args.from_beginning else "latest",
                "enable.auto.commit": False,
            }
        )
    )
    consumer.subscribe([topic])
    stopping = [False]
    signal.signal(signal.SIGTERM, lambda *_: stopping.__setitem__(0, True))
    printed = 0
    try:
        while not stopping[0] and (args.max is None or printed < args.max):
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                    print(f"stream-app: topic {topic} does not exist", file=sys.stderr)
                    return 1
                continue
            # outputs written in the wire format print as their JSON text
            value = json_text(message.value() or b"").decode("utf-8", "replace")
            if args.keys:
                key = (message.key() or b"").decode("utf-8", "replace")
                print(f"{key}\t{value}", flush=True)
            else:
                print(value, flush=True)
            printed += 1
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return 0
