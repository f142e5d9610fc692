"""`stream-app bench latency`: end to end and stage by stage, at a fixed rate.

As `bench e2e` (keyspace and topics of its own, a champion trained on simulated history,
features preloaded for every simulated entity): one worker, one event to see it answer, a
warm-up of ``warmup_s`` at the rate, then ``rate`` client events/s for ``seconds``. An event's
latency is the time its prediction was appended to the predictions topic (the topic keeps
LogAppendTime) minus the event's CreateTime (the producer sends each event at once, linger 0).
The stage breakdown (``monitoring.stages``) is the worker's own, read from its
``/dashboard/data`` right after the measured traffic: the most recent values of each stage (up
to 5,000), i.e. the measured traffic's last seconds.

Targets (benchmarks, not tests): at 1,000 events/s, p50 <= 10 ms and p99 <= 30 ms end to end.
The stages say which one holds a missed target.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from stream_app.bench.e2e import percentile, prepare, run_half_load, worker_stages
from stream_app.settings import Settings
from stream_app.use_cases.spec import UseCase

TARGET_P50_MS = 10.0
TARGET_P99_MS = 30.0


def run(
    settings: Settings,
    use_case: UseCase,
    rate: float,
    seconds: float,
    warmup_s: float = 3.0,
    seed: int = 7,
    progress: TextIO = sys.stderr,
) -> dict[str, Any]:
    run_id, world, log_dir = prepare(settings, use_case, seed, progress)
    outputs = run_half_load(settings, run_id, world, rate, seconds, log_dir, progress,
                            scenario="latency", inspect=worker_stages,
                            warmup_s=warmup_s)  # fmt: skip
    figures: dict[str, Any] = {
        "benchmark": "latency",
        "rate": rate,
        "seconds": seconds,
        "events": len(outputs.latencies_ms),
        "p50_ms": percentile(outputs.latencies_ms, 50),
        "p95_ms": percentile(outputs.latencies_ms, 95),
        "p99_ms": percentile(outputs.latencies_ms, 99),
        "max_ms": percentile(outputs.latencies_ms, 100),
        # when a read_committed consumer read each output (with exactly once, outputs are
        # appended before their transaction commits; the percentiles above count the append)
        "guarantee": settings.consumer.guarantee,
        "visible_p50_ms": percentile(outputs.visible_ms, 50),
        "visible_p99_ms": percentile(outputs.visible_ms, 99),
        "lost": outputs.expected - outputs.distinct_keys,
        "output_linger_ms": settings.kafka.output_linger_ms,
        # the worker's CPU per event over the measured traffic (from /proc; None elsewhere):
        # steadier from run to run than the latencies, which queue behind the shared cores
        "worker_cpu_ms_per_event": (
            round(outputs.worker_cpu_s * 1000 / max(len(outputs.latencies_ms), 1), 3)
            if outputs.worker_cpu_s is not None
            else None
        ),
        "stages_ms": outputs.worker or {},
        "logs": str(log_dir),
    }
    figures["targets_met"] = {
        f"p50_ms <= {TARGET_P50_MS:g}": figures["p50_ms"] <= TARGET_P50_MS,
        f"p99_ms <= {TARGET_P99_MS:g}": figures["p99_ms"] <= TARGET_P99_MS,
        "lost == 0": figures["lost"] == 0,
    }
    return figures
