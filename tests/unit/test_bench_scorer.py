"""`stream-app bench scorer` runs at a tiny size and prints the JSON its readers rely on.

Under the ``bench`` marker (``make test-bench``), like tests/e2e/test_bench_smoke.py, but it
needs no services: the bench trains, compiles and times in memory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

KEYS = {"trees", "compiled", "compile_s", "cached_load_s", "cache_hit", "check_rows",
        "max_abs_difference_validation", "batch_sizes", "targets_met"}  # fmt: skip


@pytest.mark.bench
def test_bench_scorer_runs_and_prints_its_json(tmp_path: Path) -> None:
    env = {**os.environ, "STREAM_APP_TRAINING__NUM_BOOST_ROUND": "15",
           "STREAM_APP_SERVICES__HOME": str(tmp_path)}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "stream_app.main", "bench", "scorer", "--days", "0.2",
         "--events-per-day", "3000", "--repeats", "50"],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    result = json.loads(done.stdout)
    assert result["benchmark"] == "scorer"
    assert set(result["use_cases"]) == {"delivery_eta", "machine_failure"}
    for name, figures in result["use_cases"].items():
        assert figures["compiled"], name
        assert set(figures) >= KEYS, sorted(KEYS - set(figures))
        assert figures["cache_hit"]
        assert figures["max_abs_difference_validation"] <= 1e-12
        for size in ("1", "1000"):
            assert {"lightgbm_us", "compiled_us", "speedup"} <= set(figures["batch_sizes"][size])
