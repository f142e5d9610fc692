"""Create the design's Kafka topics; a second run changes nothing and says so."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ConfigResource,
    NewTopic,
)

from stream_app.errors import TopicSetupError
from stream_app.kafka.admin import reach
from stream_app.settings import KafkaSettings

ADMIN_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class TopicPlan:
    """One topic as the design wants it."""

    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str]


@dataclass(frozen=True)
class TopicOutcome:
    """What ``init`` did to one topic: ``created``, ``exists`` or ``differs`` (with detail)."""

    name: str
    action: str
    detail: str = ""


def topic_plans(kafka: KafkaSettings) -> list[TopicPlan]:
    """The topics of the design; ``model-updates`` is compacted (latest announcement per role).

    ``min.insync.replicas`` is set on each topic when the settings ask for more than Kafka's
    default of 1, so the topic keeps it whatever the brokers' own default is.
    """
    plans = []
    for name in kafka.topics.all():
        config: dict[str, str] = {}
        if name == kafka.topics.model_updates:
            config = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}
        if kafka.min_insync_replicas > 1:
            config["min.insync.replicas"] = str(kafka.min_insync_replicas)
        plans.append(TopicPlan(name, kafka.partitions, kafka.replication_factor, config))
    return plans


def ensure_topics(kafka: KafkaSettings) -> list[TopicOutcome]:
    """Create missing topics; report existing ones, and how they differ from the plan."""
    plans = topic_plans(kafka)
    admin, metadata = reach(kafka, timeout_s=ADMIN_TIMEOUT_S)
    existing = metadata.topics
    missing = [plan for plan in plans if plan.name not in existing]
    outcomes = {plan.name: TopicOutcome(plan.name, "created") for plan in missing}
    raced: list[str] = []  # created meanwhile by another init, or not yet in our metadata
    if missing:
        futures = admin.create_topics(
            [
                NewTopic(p.name, p.partitions, p.replication_factor, config=p.config)
                for p in missing
            ],
            operation_timeout=ADMIN_TIMEOUT_S,
        )
        for name, future in futures.items():
            try:
                future.result()
            except KafkaException as exc:
                if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                    raise TopicSetupError(f"creating topic {name} failed: {exc}") from exc
                raced.append(name)
    if raced:  # judged like any existing topic, on metadata that lists it
        existing = {**existing, **_described(admin, raced)}
    present = [plan for plan in plans if plan.name in existing]
    configs = _current_configs(admin, [plan for plan in present if plan.config])
    for plan in present:
        differences = []
        partitions = existing[plan.name].partitions
        if len(partitions) != plan.partitions:
            differences.append(f"{len(partitions)} partitions, settings ask for {plan.partitions}")
        replicas = {len(partition.replicas) for partition in partitions.values()}
        if replicas and replicas != {plan.replication_factor}:
            found = "/".join(str(count) for count in sorted(replicas))
            differences.append(f"{found} replicas, settings ask for {plan.replication_factor}")
        for key, wanted in plan.config.items():
            actual = configs.get(plan.name, {}).get(key)
            if actual != wanted:
                differences.append(f"{key}={actual}, design needs {wanted}")
        if differences:
            outcomes[plan.name] = TopicOutcome(plan.name, "differs", "; ".join(differences))
        else:
            outcomes[plan.name] = TopicOutcome(plan.name, "exists")
    return [outcomes[plan.name] for plan in plans]


def _described(admin: AdminClient, names: list[str]) -> dict[str, Any]:
    """Metadata of topics that exist, read until the broker lists their partitions."""
    found: dict[str, Any] = {}
    deadline = time.monotonic() + ADMIN_TIMEOUT_S
    while len(found) < len(names) and time.monotonic() < deadline:
        for name in names:
            topic = admin.list_topics(name, timeout=ADMIN_TIMEOUT_S).topics.get(name)
            if topic is not None and topic.error is None and topic.partitions:
                found[name] = topic
        if len(found) < len(names):
            time.sleep(0.2)
    missing = sorted(set(names) - set(found))
    if missing:
        raise TopicSetupError(f"topics {missing} exist but their metadata did not arrive")
    return found


def _current_configs(admin: AdminClient, plans: list[TopicPlan]) -> dict[str, dict[str, str]]:
    if not plans:
        return {}
    resources = [ConfigResource(ConfigResource.Type.TOPIC, plan.name) for plan in plans]
    result = {}
    for resource, future in admin.describe_configs(resources).items():
        entries = future.result(timeout=ADMIN_TIMEOUT_S)
        result[resource.name] = {key: entry.value for key, entry in entries.items()}
    return result
