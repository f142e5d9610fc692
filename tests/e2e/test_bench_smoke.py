"""Every `stream-app bench` runs, at tiny sizes, and prints the JSON its readers rely on.

Not a measurement (the figures of a tiny run mean nothing): a bench that no longer starts, or
whose JSON lost a key, fails here instead of in front of the next person who runs it. Twice a
bench broke unseen after other work (`bench e2e` after the lifecycle work, `bench features`
after the orchestrator needed two more topics).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from stream_app.settings import Settings
from tests.conftest import free_port
from tests.e2e.conftest import Run

SMOKE: dict[str, tuple[list[str], set[str]]] = {
    "decode": (
        ["--events", "2000"],
        {"benchmark", "decode_eps", "orjson_loads_eps", "decode_vs_orjson", "formats"},
    ),
    "simulation": (
        ["--days", "0.3", "--events-per-day", "4000"],
        {"benchmark", "metric", "model_mae", "constant_mae", "model_vs_constant"},
    ),
    "e2e": (
        ["--events", "400", "--naive-events", "100", "--half-load-seconds", "2"],
        {
            "e2e_eps",
            "naive_eps",
            "passthrough_eps",
            "raw_eps",
            "ceiling_eps",
            "p50_ms",
            "p99_ms",
            "p99_ms_half_load",
            "stages_ms_half_load",
            "lost",
            "e2e_vs_naive",
            "e2e_vs_passthrough",
            "e2e_vs_ceiling",
            "ceiling_lost",
            "exactly_once",
            "targets_met",
        },
    ),
    "latency": (
        ["--rate", "100", "--seconds", "3", "--warmup-seconds", "1"],
        {"p50_ms", "p95_ms", "p99_ms", "stages_ms", "lost", "targets_met"},
    ),
    "features": (
        ["--readings", "20000", "--naive-readings", "300"],
        {"agent_readings_per_s", "naive_readings_per_s", "agent_vs_naive", "targets_met"},
    ),
    "freshness": (
        ["--rate", "300", "--seconds", "3", "--warmup-seconds", "3"],
        {"probes", "visible_p50_ms", "visible_p99_ms", "used_p50_ms", "targets_met"},
    ),
    "replay": (
        ["--events", "600", "--rounds", "1"],
        {
            "replay_eps",
            "raw_consume_eps",
            "replay_vs_raw",
            "phases_s",
            "identical_to_production",
            "targets_met",
        },
    ),
    "scale": (
        ["--events", "300", "--workers", "1", "2"],
        {"runs", "speedup", "partitions", "cores", "lost", "targets_met"},
    ),
    "chaos": (
        ["--scenario", "hostile", "--rate", "50", "--seconds", "3"],
        {"runs", "scenarios", "lost", "duplicates", "guarantee", "crashes", "targets_met", "logs"},
    ),
}


@pytest.fixture(scope="module")
def bench_env(live_settings: Settings, cassandra_session: Any) -> Iterator[dict[str, str]]:
    """The live services, a keyspace of this module's own (the benches add `_bench`) and a
    free web port for the benches' workers."""
    keyspace = f"smoke_{free_port()}"
    env = {
        "STREAM_APP_KAFKA__BOOTSTRAP_SERVERS": live_settings.kafka.bootstrap_servers,
        "STREAM_APP_CASSANDRA__PORT": str(live_settings.cassandra.port),
        "STREAM_APP_CASSANDRA__KEYSPACE": keyspace,
        "STREAM_APP_WORKER__WEB_PORT": str(free_port()),
        "STREAM_APP_WORKER__LOG_LEVEL": "warning",
    }
    yield env
    cassandra_session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}_bench")


@pytest.mark.bench
@pytest.mark.parametrize("bench", list(SMOKE))
def test_every_bench_runs_and_prints_its_json(
    bench: str, bench_env: dict[str, str], stream_app: Run
) -> None:
    arguments, keys = SMOKE[bench]
    done = stream_app("bench", bench, *arguments, env=bench_env, timeout=420)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    result = json.loads(done.stdout)
    assert result["benchmark"] == bench
    assert keys <= set(result), sorted(keys - set(result))
    if "lost" in result:  # tiny, but nothing accepted may go missing even so
        assert result["lost"] == 0
    if bench == "e2e":  # the ceiling answered every event too (else its figure means little)
        assert result["ceiling_lost"] == 0
        assert (result["exactly_once"]["lost"], result["exactly_once"]["duplicates"]) == (0, 0)
    if bench == "scale":  # both workers held partitions and scored
        assert [sum(r["partitions_per_worker"]) for r in result["runs"]] == [6, 6]
        assert [len(r["partitions_per_worker"]) for r in result["runs"]] == [1, 2]
    stages = {"kafka_wait", "decode", "features", "score", "publish", "store"}
    if bench == "latency":  # every stage of the scoring path measured by the worker itself
        assert set(result["stages_ms"]) >= stages
    if bench == "e2e":  # and at half load, where the p99 target is
        assert set(result["stages_ms_half_load"]) >= stages


def test_a_bench_without_its_services_says_so_in_one_line(stream_app: Run) -> None:
    env = {"STREAM_APP_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}
    done = stream_app("bench", "features", "--readings", "10", env=env, timeout=120)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("stream-app: cannot reach Kafka at 127.0.0.1:")
