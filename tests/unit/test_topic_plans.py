from __future__ import annotations

from stream_app.provisioning.topics import topic_plans
from stream_app.settings import KafkaSettings


def test_the_topics_of_the_design_and_of_the_model_lifecycle() -> None:
    plans = topic_plans(KafkaSettings())
    assert [p.name for p in plans] == [
        "client-events",
        "sensor-readings",
        "ground-truth",
        "predictions",
        "accuracy-events",
        "dead-letter",
        "model-updates",
        "predictions-shadow",
        "model-decisions",
        "performance-estimates",
    ]
    assert all(p.partitions == 6 for p in plans)


def test_only_model_updates_is_compacted() -> None:
    plans = {p.name: p for p in topic_plans(KafkaSettings(partitions=2))}
    assert plans["model-updates"].config["cleanup.policy"] == "compact"
    assert all(not p.config for name, p in plans.items() if name != "model-updates")
    assert plans["predictions"].partitions == 2


def test_a_bench_scenario_never_uses_a_production_topic() -> None:
    from stream_app.bench.e2e import bench_settings
    from stream_app.settings import Settings, TopicNames

    topics = bench_settings(Settings(), "r1", "worker").kafka.topics.model_dump()
    production = set(TopicNames().model_dump().values())
    assert set(topics) == set(TopicNames.model_fields)  # every topic, one added later too
    assert all(name.startswith("bench-r1-worker-") for name in topics.values())
    assert not production & set(topics.values())
