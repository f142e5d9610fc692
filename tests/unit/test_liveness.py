"""The progress watchdog's rules (monitoring/liveness.py), on a fake clock."""

from __future__ import annotations

from dataclasses import replace

from prometheus_client import CollectorRegistry

from stream_app.monitoring.liveness import ConsumerProgress, Watchdog, judge
from stream_app.monitoring.prometheus import WorkerGauges

STALL = 60.0
BASE = ConsumerProgress("client-events", "g", started=0.0, last_poll=100.0, last_batch=100.0,
                        in_flight=0, lag=0)  # fmt: skip


def test_an_idle_consumer_is_healthy_however_long_it_waits() -> None:
    verdict = judge(replace(BASE, last_batch=10.0), now=101.0, stall_after_s=STALL,
                    last_retry=None)  # fmt: skip
    assert not verdict.stalled
    assert verdict.reason == "idle"


def test_work_waiting_without_a_finished_batch_is_a_stall() -> None:
    frozen = replace(BASE, last_batch=30.0, in_flight=2, lag=500)
    assert not judge(frozen, now=89.0, stall_after_s=STALL, last_retry=None).stalled
    verdict = judge(frozen, now=90.0, stall_after_s=STALL, last_retry=None)
    assert verdict.stalled
    assert verdict.seconds_since_progress == 60.0
    assert "no batch finished for 60 s" in verdict.reason
    # lag alone (nothing in flight: the loop no longer submits) is waiting work too
    assert judge(replace(frozen, in_flight=0), 90.0, STALL, None).stalled


def test_an_outage_being_retried_is_not_a_stall() -> None:
    frozen = replace(BASE, last_batch=0.0, last_poll=0.0, in_flight=6, lag=10_000)
    verdict = judge(frozen, now=300.0, stall_after_s=STALL, last_retry=290.0)
    assert not verdict.stalled
    assert "retrying" in verdict.reason
    assert judge(frozen, now=300.0, stall_after_s=STALL, last_retry=200.0).stalled


def test_a_loop_that_stopped_polling_is_a_stall_even_with_nothing_waiting() -> None:
    dead = replace(BASE, last_poll=10.0, last_batch=10.0)
    verdict = judge(dead, now=71.0, stall_after_s=STALL, last_retry=None)
    assert verdict.stalled
    assert "has not polled Kafka" in verdict.reason
    never_polled = replace(BASE, started=5.0, last_poll=None, last_batch=None)
    assert not judge(never_polled, 60.0, STALL, None).stalled
    assert judge(never_polled, 65.0, STALL, None).stalled


def test_the_watchdog_reports_each_consumer_sets_its_gauges_and_recovers() -> None:
    now = [100.0]
    registry = CollectorRegistry()
    watchdog = Watchdog(STALL, lambda: None, WorkerGauges(registry), clock=lambda: now[0])
    state = {"scoring": replace(BASE, in_flight=1, last_batch=100.0, last_poll=100.0)}
    watchdog.watch(lambda: state["scoring"])
    watchdog.watch(lambda: replace(BASE, topic="sensor-readings", last_poll=now[0]))
    healthy, body = watchdog.health()
    assert healthy
    assert body["status"] == "ok"
    now[0] = 170.0
    state["scoring"] = replace(state["scoring"], last_poll=169.0)  # polling, batch stuck
    healthy, body = watchdog.health()
    assert not healthy
    assert body["status"] == "stalled"
    assert [c["stalled"] for c in body["consumers"]] == [True, False]
    gauge = registry.get_sample_value(
        "stream_app_consumer_stalled", {"topic": "client-events", "group": "g"}
    )
    assert gauge == 1.0
    since = registry.get_sample_value(
        "stream_app_consumer_seconds_since_progress", {"topic": "client-events", "group": "g"}
    )
    assert since == 70.0
    state["scoring"] = replace(state["scoring"], last_batch=170.0)
    assert watchdog.health()[0]
    gauge = registry.get_sample_value(
        "stream_app_consumer_stalled", {"topic": "client-events", "group": "g"}
    )
    assert gauge == 0.0
