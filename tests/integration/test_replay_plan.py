"""A replay's plan against the real broker: the exact offsets of a time range in every
partition, read without joining or committing any consumer group."""

from __future__ import annotations

from collections.abc import Callable

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from stream_app.replay.plan import plan_replay
from stream_app.settings import Settings

BASE = 1_795_000_000_000  # message timestamps: BASE + i seconds


def test_the_plan_holds_exactly_the_messages_of_the_range(
    live_settings: Settings, kafka_admin: AdminClient, scratch_topics: Callable[..., str],
    tag: str,
) -> None:  # fmt: skip
    topic = scratch_topics("replay-plan", partitions=3)
    producer = Producer(live_settings.kafka.client_config())
    expected = {0: 0, 1: 0, 2: 0}
    for i in range(90):
        partition, at = i % 3, BASE + i * 1000
        producer.produce(topic, value=b"{}", partition=partition, timestamp=at)
        if BASE + 30_000 <= at < BASE + 60_000:
            expected[partition] += 1
    assert producer.flush(30) == 0

    # a production consumer group with committed offsets, which a plan must not move
    group = f"production-{tag}"
    worker = Consumer({**live_settings.kafka.client_config(), "group.id": group,
                       "enable.auto.commit": False})  # fmt: skip
    committed = [TopicPartition(topic, p, 7) for p in range(3)]
    worker.commit(offsets=committed, asynchronous=False)
    worker.close()

    plan = plan_replay(live_settings.kafka, topic, BASE + 30_000, BASE + 60_000)
    assert {p.partition: p.count for p in plan.partitions} == expected
    assert plan.count == 30
    assert [(p.start, p.end) for p in plan.partitions] == [(10, 20)] * 3

    everything = plan_replay(live_settings.kafka, topic, BASE - 1000, BASE + 10**9)
    assert everything.count == 90  # to the end of each partition
    later = plan_replay(live_settings.kafka, topic, BASE + 10**8, BASE + 10**9)
    assert later.count == 0

    groups = {g.group_id for g in kafka_admin.list_consumer_groups().result(timeout=30).valid}
    assert "stream-app-replay-plan" not in groups  # planning joins no group
    after = kafka_admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[
        group
    ].result(timeout=30)
    assert sorted((tp.partition, tp.offset) for tp in after.topic_partitions) == [
        (0, 7), (1, 7), (2, 7)
    ]  # fmt: skip
    for future in kafka_admin.delete_consumer_groups([group]).values():
        future.result(timeout=30)
