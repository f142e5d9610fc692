"""The batch consumer's delivery rules, through an in-memory consumer (tests/fakes/kafka.py).

Offsets move only after a batch's outputs are acknowledged, in read order; a rebalance
finishes and commits the batches in hand; lost partitions are not committed; errors the
client recovers from (the broker-restart case that once stopped scoring for good) leave the
consumer running; everything else ends the worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest
from confluent_kafka import KafkaError

from stream_app.kafka.consumer import BatchConsumer, BatchOptions, recoverable
from stream_app.kafka.transactions import BatchOutputs
from stream_app.messages import InputMessage, Record
from tests.fakes.kafka import FakeConsumer, FakeTransactions, raise_from_consume

TOPIC = "client-events"
P0, P1 = (TOPIC, 0), (TOPIC, 1)
OPTIONS = BatchOptions(batch_size=3, batches_in_flight=4, batch_wait_s=0.01, commit_interval_s=0)


class Crashed(Exception):
    """What the test's crash hook raises instead of exiting the process."""


class Service:
    """Records batches; a batch finishes when the test opens its gate (or at once)."""

    def __init__(self, hold: bool = False, publisher: BatchOutputs | None = None) -> None:
        self.hold = hold
        self.publisher = publisher  # given: one output per message, published as it is read
        self.batches: list[list[tuple[int, int]]] = []
        self.gates: list[asyncio.Event] = []
        self.fail_next = False
        self.revoked: list[list[int]] = []
        self.assigned: list[list[int]] = []

    async def process(self, messages: Sequence[InputMessage]) -> int:
        self.batches.append([(m.partition, m.offset) for m in messages])
        gate = asyncio.Event()
        self.gates.append(gate)
        if self.fail_next:
            raise RuntimeError("a bug in the service")
        if self.publisher is not None:
            await self.publisher.publish([output(m.partition, m.offset) for m in messages])
        if self.hold:
            await gate.wait()
        return len(messages)

    async def on_partitions_assigned(self, partitions: list[int]) -> None:
        self.assigned.append(partitions)

    def on_partitions_revoked(self, partitions: list[int]) -> None:
        self.revoked.append(partitions)


class Harness:
    def __init__(
        self,
        service: Service,
        options: BatchOptions = OPTIONS,
        report_commit: Callable[[float], None] | None = None,
        transactions: FakeTransactions | None = None,
    ) -> None:
        self.service = service
        self.crashes: list[str] = []
        self.fake: FakeConsumer | None = None

        def make(config: dict[str, Any]) -> FakeConsumer:
            self.fake = FakeConsumer(config)
            if transactions is not None:
                transactions.consumer = self.fake
            return self.fake

        def crash(what: str) -> None:
            self.crashes.append(what)

        self.consumer = BatchConsumer(
            {"group.id": "g"}, service, topic=TOPIC, options=options, make_consumer=make,
            crash=crash, report_commit=report_commit, transactions=transactions,
        )  # fmt: skip

    @property
    def kafka(self) -> FakeConsumer:
        assert self.fake is not None
        return self.fake

    async def start(self, partitions: Sequence[tuple[str, int]] = (P0, P1)) -> None:
        await self.consumer.start()
        await self.on_thread(lambda: self.kafka.assign_now(list(partitions)))

    async def on_thread(self, action: Callable[[], Any]) -> Any:
        return await self.consumer._on_thread(action)

    async def until(self, condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not condition():
            assert asyncio.get_running_loop().time() < deadline, "condition never held"
            await asyncio.sleep(0.005)


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())


def values(n: int) -> list[bytes]:
    return [b"{}"] * n


def output(partition: int, offset: int) -> Record:
    return Record("predictions", None, f"{partition}:{offset}".encode())


def test_offsets_are_committed_only_after_the_batch_is_acknowledged() -> None:
    async def scenario() -> None:
        h = Harness(Service(hold=True))
        await h.start([P0])
        h.kafka.produce(TOPIC, 0, values(3))
        await h.until(lambda: len(h.service.batches) == 1)
        await asyncio.sleep(0.05)  # the consumer polls and commits on, the batch is open
        assert h.kafka.committed_offsets() == {}
        h.service.gates[0].set()
        await h.until(lambda: h.kafka.committed_offsets() == {P0: 3})
        await h.consumer.stop()
        assert h.crashes == []

    run(scenario)


def test_commits_never_pass_an_unfinished_earlier_batch() -> None:
    async def scenario() -> None:
        h = Harness(Service(hold=True))
        await h.start([P0])
        h.kafka.produce(TOPIC, 0, values(6))  # two batches of three
        await h.until(lambda: len(h.service.batches) == 2)
        h.service.gates[1].set()  # the later batch finishes first
        await asyncio.sleep(0.05)
        assert h.kafka.committed_offsets() == {}
        h.service.gates[0].set()
        await h.until(lambda: h.kafka.committed_offsets() == {P0: 6})
        await h.consumer.stop()

    run(scenario)


def test_a_rebalance_finishes_and_commits_the_batches_in_hand_first() -> None:
    async def scenario() -> None:
        h = Harness(Service(hold=True))
        await h.start()
        h.kafka.produce(TOPIC, 1, values(2))
        await h.until(lambda: len(h.service.batches) == 1)

        def revoke(kafka: FakeConsumer) -> None:
            h.service.gates[0].set()  # the batch finishes while the callback waits for it
            kafka.revoke_now([P1])

        h.kafka.script.append(revoke)
        await h.until(lambda: h.service.revoked == [[1]])
        during = [c for c in h.kafka.commits if c.during_revoke]
        assert [(c.offsets, c.asynchronous) for c in during] == [({P1: 2}, False)]
        await h.consumer.stop()
        assert h.crashes == []

    run(scenario)


def test_lost_partitions_are_not_committed_and_their_later_results_dropped() -> None:
    async def scenario() -> None:
        h = Harness(Service(hold=True))
        await h.start()
        h.kafka.produce(TOPIC, 0, values(3))
        await h.until(lambda: len(h.service.batches) == 1)

        def lose(kafka: FakeConsumer) -> None:
            h.service.gates[0].set()
            kafka.revoke_now([P0, P1], lost=True)

        h.kafka.script.append(lose)
        await h.until(lambda: h.service.revoked == [[0, 1]])
        await asyncio.sleep(0.05)
        assert h.kafka.committed_offsets() == {}  # the next owner scores the batch again
        await h.consumer.stop()
        assert h.kafka.committed_offsets() == {}
        assert h.crashes == []

    run(scenario)


def test_a_failed_commit_in_a_rebalance_after_a_broker_restart_does_not_stop_the_consumer() -> None:
    """The acceptance failure: the broker came back, the group no longer knew the member, the
    commit in the revoke callback raised UNKNOWN_MEMBER_ID out of consume(), and the scoring
    consumer's loop died while the worker lived on."""

    async def scenario() -> None:
        h = Harness(Service())
        await h.start()
        h.kafka.produce(TOPIC, 0, values(3))
        await h.until(lambda: len(h.service.batches) == 1)
        unknown = KafkaError(KafkaError.UNKNOWN_MEMBER_ID, "Commit failed: Broker: Unknown member")

        def revoke_with_a_failing_commit(kafka: FakeConsumer) -> None:
            kafka.commit_error = unknown
            kafka.revoke_now([P0, P1])

        h.kafka.script += [revoke_with_a_failing_commit, lambda k: k.assign_now([P0, P1])]
        await h.until(lambda: h.service.assigned[-1:] == [[0, 1]] and len(h.service.assigned) == 2)
        h.kafka.produce(TOPIC, 1, values(2))  # scoring goes on after the rejoin
        await h.until(lambda: len(h.service.batches) == 2)
        assert h.service.batches[1] == [(1, 0), (1, 1)]
        await h.until(lambda: h.kafka.committed_offsets().get(P1) == 2)
        await h.consumer.stop()
        assert h.crashes == []

    run(scenario)


def test_recoverable_errors_out_of_consume_are_survived_and_others_end_the_worker() -> None:
    async def scenario() -> None:
        h = Harness(Service())
        await h.start([P0])
        for code in (KafkaError.UNKNOWN_MEMBER_ID, KafkaError._TRANSPORT,
                     KafkaError.NOT_COORDINATOR):  # fmt: skip
            h.kafka.script.append(raise_from_consume(KafkaError(code)))
        await h.until(lambda: not h.kafka.script)
        h.kafka.produce(TOPIC, 0, values(1))
        await h.until(lambda: len(h.service.batches) == 1)
        assert h.crashes == []
        h.kafka.script.append(raise_from_consume(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)))
        await h.until(lambda: bool(h.crashes))
        assert "TOPIC_AUTHORIZATION_FAILED" in h.crashes[0] or "authoriz" in h.crashes[0].lower()

    run(scenario)


def test_a_commit_the_broker_refused_is_sent_again() -> None:
    async def scenario() -> None:
        h = Harness(Service())
        await h.start([P0])
        h.kafka.commit_error = KafkaError(KafkaError.REBALANCE_IN_PROGRESS)
        h.kafka.produce(TOPIC, 0, values(2))
        await h.until(lambda: h.kafka.committed_offsets() == {P0: 2})
        await h.consumer.stop()
        assert h.crashes == []

    run(scenario)


def test_a_failed_batch_ends_the_worker_without_committing_it() -> None:
    async def scenario() -> None:
        h = Harness(Service())
        h.service.fail_next = True
        await h.start([P0])
        h.kafka.produce(TOPIC, 0, values(2))
        await h.until(lambda: bool(h.crashes))
        assert "processing a batch" in h.crashes[0]
        assert h.kafka.committed_offsets() == {}

    run(scenario)


def test_a_fatal_client_error_ends_the_worker() -> None:
    async def scenario() -> None:
        h = Harness(Service())
        await h.start([P0])
        h.kafka.config["error_cb"](KafkaError(KafkaError._FATAL, "fenced", fatal=True))
        await h.until(lambda: bool(h.crashes))
        assert "fenced" in h.crashes[0]

    run(scenario)


def test_an_error_in_a_rebalance_callback_ends_the_worker_instead_of_the_consumer() -> None:
    async def scenario() -> None:
        h = Harness(Service())
        await h.start([P0])

        def broken(partitions: list[int]) -> None:
            raise RuntimeError("a bug while forgetting state")

        h.service.on_partitions_revoked = broken  # type: ignore[method-assign]
        h.kafka.script.append(lambda kafka: kafka.revoke_now([P0]))
        h.kafka.produce(TOPIC, 0, values(1))
        await h.until(lambda: bool(h.crashes), timeout_s=2)
        assert "handing back" in h.crashes[0] or "failed" in h.crashes[0]

    run(scenario)


def test_the_watchdog_sees_progress_and_its_absence() -> None:
    async def scenario() -> None:
        h = Harness(Service(hold=True))
        await h.start([P0])
        await h.until(lambda: h.consumer.progress().last_poll is not None)
        idle = h.consumer.progress()
        assert idle.in_flight == 0
        h.kafka.produce(TOPIC, 0, values(3))
        await h.until(lambda: len(h.service.batches) == 1)
        busy = h.consumer.progress()
        assert busy.in_flight == 1
        h.service.gates[0].set()
        await h.until(lambda: h.consumer.progress().in_flight == 0)
        assert (h.consumer.progress().last_batch or 0) > (busy.last_batch or 0)
        await h.consumer.stop()

    run(scenario)


def test_its_state_in_the_group_from_start_to_stop() -> None:
    async def scenario() -> None:
        h = Harness(Service())
        assert h.consumer.state().state == "starting"
        await h.consumer.start()
        assert h.consumer.state().state == "waiting"
        await h.on_thread(lambda: h.kafka.assign_now([P1, P0]))
        state = h.consumer.state()
        assert (state.state, state.partitions, state.group) == ("assigned", (0, 1), "g")
        await h.on_thread(lambda: h.kafka.revoke_now([P0, P1]))
        assert h.consumer.state().state == "waiting"
        await h.consumer.stop()
        assert h.consumer.state().state == "draining"

    run(scenario)


def test_stop_finishes_the_batches_in_flight_commits_them_and_leaves_the_group() -> None:
    """What SIGTERM does to each consumer: nothing read is left unscored or uncommitted."""

    async def scenario() -> None:
        h = Harness(Service(hold=True))
        await h.start([P0, P1])
        h.kafka.produce(TOPIC, 0, values(3))
        h.kafka.produce(TOPIC, 1, values(2))
        await h.until(lambda: len(h.service.batches) == 2)
        stopping = asyncio.ensure_future(h.consumer.stop())
        await asyncio.sleep(0.05)
        assert not stopping.done()  # waits for the batches in flight
        assert h.consumer.state().state == "draining"
        assert h.kafka.committed_offsets() == {}
        for gate in h.service.gates:
            gate.set()
        await stopping
        assert h.kafka.committed_offsets() == {P0: 3, P1: 2}
        assert h.kafka.closed
        assert not h.kafka.assigned
        assert len(h.service.batches) == 2  # nothing fetched after the stop began
        assert h.crashes == []

    run(scenario)


def test_the_commit_stage_is_reported_once_kafka_acknowledged_the_batch() -> None:
    """The scoring path's last stage: from a batch done to its offsets committed."""

    async def scenario() -> None:
        reported: list[float] = []
        h = Harness(Service(hold=True), report_commit=reported.append)
        await h.start([P0])
        h.kafka.commit_error = KafkaError(KafkaError.UNKNOWN_MEMBER_ID)  # the first commit fails
        h.kafka.produce(TOPIC, 0, values(3))
        await h.until(lambda: len(h.service.batches) == 1)
        h.service.gates[0].set()
        await h.until(lambda: h.kafka.committed_offsets() == {P0: 3})
        await h.until(lambda: len(reported) == 1)
        assert 0 <= reported[0] < 5
        h.kafka.produce(TOPIC, 0, values(2))
        await h.until(lambda: len(h.service.batches) == 2)
        await asyncio.sleep(0.05)
        assert len(reported) == 1  # the second batch is not done: nothing to report
        h.service.gates[1].set()
        await h.until(lambda: len(reported) == 2)
        await h.consumer.stop()
        assert len(reported) == 2
        assert h.crashes == []

    run(scenario)


@pytest.mark.parametrize(
    ("code", "fatal", "expected"),
    [
        (KafkaError.UNKNOWN_MEMBER_ID, False, True),
        (KafkaError.ILLEGAL_GENERATION, False, True),
        (KafkaError.REBALANCE_IN_PROGRESS, False, True),
        (KafkaError.NOT_COORDINATOR, False, True),
        (KafkaError._ALL_BROKERS_DOWN, False, True),
        (KafkaError._TRANSPORT, False, True),
        (KafkaError.TOPIC_AUTHORIZATION_FAILED, False, False),
        (KafkaError.GROUP_AUTHORIZATION_FAILED, False, False),
        (KafkaError._FATAL, True, False),
        (KafkaError.UNKNOWN_MEMBER_ID, True, False),  # fatal wins
    ],
)
def test_which_errors_are_recoverable(code: int, fatal: bool, expected: bool) -> None:
    assert recoverable(KafkaError(code, fatal=fatal)) is expected


def test_the_fake_consumer_offers_nothing_the_real_one_lacks() -> None:
    """The fake may only use confluent-kafka's Consumer interface (a method the real one
    lacks, `assignment_lost`, once passed here and failed in a real worker)."""
    from confluent_kafka import Consumer

    from tests.fakes.kafka import FakeConsumer

    real = {name for name in dir(Consumer) if not name.startswith("_")}
    test_helpers = {"produce", "committed_offsets", "assign_now", "revoke_now", "config", "logs",
                    "commits", "positions", "assigned", "paused", "closed", "script",
                    "commit_error", "in_revoke", "consume_calls", "generation"}  # fmt: skip
    offered = {name for name in dir(FakeConsumer) if not name.startswith("_")}
    offered |= {f for f in FakeConsumer.__dataclass_fields__ if not f.startswith("_")}
    assert offered - test_helpers <= real, sorted(offered - test_helpers - real)


class Sent:
    """The at-least-once publisher behind ``BatchOutputs`` (used outside a batch only)."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    async def publish(self, records: Sequence[Record]) -> None:
        self.records += records


def exactly_once(hold: bool = False) -> tuple[Harness, FakeTransactions, Sent]:
    sent, transactions = Sent(), FakeTransactions()
    h = Harness(Service(hold, BatchOutputs(sent)), transactions=transactions)
    return h, transactions, sent


def committed_outputs(transactions: FakeTransactions) -> list[Record]:
    return [record for records in transactions.committed for record in records]


def test_exactly_once_commits_a_batchs_outputs_with_its_offsets_in_one_transaction() -> None:
    async def scenario() -> None:
        h, transactions, sent = exactly_once(hold=True)
        await h.start([P0])
        h.kafka.produce(TOPIC, 0, values(3))
        await h.until(lambda: len(h.service.batches) == 1)
        await asyncio.sleep(0.05)
        assert transactions.committed == []
        assert h.kafka.committed_offsets() == {}
        h.service.gates[0].set()
        await h.until(lambda: h.kafka.committed_offsets() == {P0: 3})
        assert transactions.committed == [[output(0, 0), output(0, 1), output(0, 2)]]
        assert sent.records == []  # nothing left the transaction
        await h.consumer.stop()
        assert transactions.closed
        assert h.crashes == []

    run(scenario)


def test_an_aborted_transaction_is_processed_again_from_the_committed_offsets() -> None:
    async def scenario() -> None:
        h, transactions, _ = exactly_once()
        await h.start([P0])
        h.kafka.produce(TOPIC, 0, values(3))
        await h.until(lambda: h.kafka.committed_offsets() == {P0: 3})
        transactions.abort_next = True
        h.kafka.produce(TOPIC, 0, values(3))
        await h.until(lambda: h.kafka.committed_offsets() == {P0: 6})
        assert transactions.aborted == 1
        assert h.service.batches[1] == h.service.batches[2] == [(0, 3), (0, 4), (0, 5)]
        assert committed_outputs(transactions) == [output(0, i) for i in range(6)]
        await h.consumer.stop()
        assert h.crashes == []

    run(scenario)


def test_exactly_once_drops_the_outputs_of_lost_partitions_and_commits_none_of_them() -> None:
    async def scenario() -> None:
        h, transactions, _ = exactly_once(hold=True)
        await h.start([P0, P1])
        h.kafka.produce(TOPIC, 0, values(3))
        await h.until(lambda: len(h.service.batches) == 1)

        def lose(kafka: FakeConsumer) -> None:
            h.service.gates[0].set()
            kafka.revoke_now([P0, P1], lost=True)

        h.kafka.script += [lose, lambda k: k.assign_now([P0, P1])]
        await h.until(lambda: len(h.service.batches) == 2)  # scored again after the rejoin
        h.service.gates[1].set()
        await h.until(lambda: h.kafka.committed_offsets() == {P0: 3})
        assert committed_outputs(transactions) == [output(0, i) for i in range(3)]
        await h.consumer.stop()
        assert h.crashes == []

    run(scenario)


def test_a_zombie_member_cannot_commit_and_a_revoke_commits_what_is_in_hand() -> None:
    """A transaction sent with an old group generation is refused (fenced); the work goes
    back to the committed offsets. A revoke commits the finished outputs first."""

    async def scenario() -> None:
        h, transactions, _ = exactly_once(hold=True)
        await h.start([P0, P1])
        h.kafka.produce(TOPIC, 1, values(2))
        await h.until(lambda: len(h.service.batches) == 1)

        def revoke(kafka: FakeConsumer) -> None:
            h.service.gates[0].set()
            kafka.revoke_now([P1])

        h.kafka.script.append(revoke)
        await h.until(lambda: h.service.revoked == [[1]])
        assert [c.offsets for c in h.kafka.commits if c.during_revoke] == [{P1: 2}]
        assert committed_outputs(transactions) == [output(1, 0), output(1, 1)]
        transactions.group_generation = h.kafka.generation + 1  # the group moved on
        h.kafka.produce(TOPIC, 0, values(2))
        await h.until(lambda: len(h.service.batches) == 2)
        h.service.gates[1].set()
        await h.until(lambda: transactions.aborted >= 1)
        transactions.group_generation = None  # the member rejoined
        await h.until(lambda: len(h.service.batches) >= 3)
        for gate in h.service.gates:
            gate.set()
        await h.until(lambda: h.kafka.committed_offsets().get(P0) == 2)
        assert h.service.batches[2] == [(0, 0), (0, 1)]
        assert committed_outputs(transactions)[2:] == [output(0, 0), output(0, 1)]
        await h.consumer.stop()

    run(scenario)


def test_outputs_wait_while_transactions_cannot_begin_and_are_committed_once() -> None:
    async def scenario() -> None:
        h, transactions, _ = exactly_once()
        transactions.not_ready_next = True
        await h.start([P0])
        h.kafka.produce(TOPIC, 0, values(2))
        await h.until(lambda: h.kafka.committed_offsets() == {P0: 2})
        assert committed_outputs(transactions) == [output(0, 0), output(0, 1)]
        assert len(h.service.batches) == 1
        await h.consumer.stop()

    run(scenario)


def test_outputs_published_outside_a_batch_go_to_the_fallback_publisher() -> None:
    sent = Sent()
    asyncio.run(BatchOutputs(sent).publish([output(0, 0)]))
    assert sent.records == [output(0, 0)]


def test_a_message_read_while_paused_is_read_again_later() -> None:
    """While every batch slot is busy the consumer only serves the group; a message that
    poll returns then (from a partition assigned meanwhile) must not be skipped."""

    async def scenario() -> None:
        options = BatchOptions(batch_size=3, batches_in_flight=1, batch_wait_s=0.01,
                               commit_interval_s=0)  # fmt: skip
        h = Harness(Service(hold=True), options)
        await h.start([P0])
        h.kafka.produce(TOPIC, 0, values(3))
        await h.until(lambda: len(h.service.batches) == 1)
        h.kafka.produce(TOPIC, 1, values(1))
        await h.on_thread(lambda: h.kafka.assign_now([P0, P1]))
        await h.on_thread(h.consumer._keep_membership)  # its poll returns P1's message
        h.service.gates[0].set()
        await h.until(lambda: len(h.service.batches) == 2)
        h.service.gates[1].set()
        assert h.service.batches[1] == [(1, 0)]
        await h.until(lambda: h.kafka.committed_offsets() == {P0: 3, P1: 1})
        await h.consumer.stop()

    run(scenario)


def test_exactly_once_wraps_the_services_publisher_and_refuses_the_faust_agent() -> None:
    from stream_app.errors import ConfigurationError
    from stream_app.runtime.dependencies import services_publisher
    from stream_app.settings import Settings

    producer: Any = Sent()
    assert services_publisher(Settings(), producer) is producer
    exactly = Settings(consumer={"guarantee": "exactly_once"})  # type: ignore[arg-type]
    wrapped = services_publisher(exactly, producer)
    assert isinstance(wrapped, BatchOutputs)
    assert wrapped.fallback is producer
    faust = exactly.model_copy(update={"scoring": exactly.scoring.model_copy(
        update={"consumer": "faust"})})  # fmt: skip
    with pytest.raises(ConfigurationError, match="needs the batch consumer"):
        services_publisher(faust, producer)
