"""`stream-app services up|status|down` on ports and a home folder of this test's own.

Runs a second real Kafka broker and Cassandra node beside the ones the suite uses.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.e2e.conftest import Run, run_cli


def project_jvms(home: Path) -> list[int]:
    """Pids of JVMs whose command line names this home folder."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and "-Dstream-app.service=" in cmdline and str(home) in cmdline:
            pids.append(int(proc.name))
    return pids


@pytest.fixture
def own_services(tmp_path: Path) -> Iterator[dict[str, str]]:
    home = tmp_path / "home"
    env = {
        "STREAM_APP_SERVICES__HOME": str(home),
        "STREAM_APP_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "STREAM_APP_SERVICES__KAFKA_CONTROLLER_PORT": str(free_port()),
        "STREAM_APP_CASSANDRA__PORT": str(free_port()),
        "STREAM_APP_SERVICES__CASSANDRA_STORAGE_PORT": str(free_port()),
        "STREAM_APP_SERVICES__CASSANDRA_HEAP_MB": "512",
        "STREAM_APP_SERVICES__KAFKA_HEAP_MB": "256",
    }
    yield env
    run_cli("services", "down", env=env)
    assert project_jvms(home) == []


@pytest.mark.own_services
def test_up_status_down(stream_app: Run, own_services: dict[str, str]) -> None:
    home = Path(own_services["STREAM_APP_SERVICES__HOME"])
    up = stream_app("services", "up", env=own_services)
    assert up.returncode == 0, up.stderr + up.stdout
    assert "kafka: jars fetched" in up.stdout
    assert "cassandra: jars fetched" in up.stdout
    assert "kafka: ready in" in up.stdout
    assert "cassandra: ready in" in up.stdout
    assert len(project_jvms(home)) == 2
    assert (home / "kafka" / "logs" / "server.log").exists()
    assert (home / "cassandra" / "logs" / "system.log").exists()

    status = stream_app("services", "status", env=own_services)
    assert status.returncode == 0, status.stdout
    assert status.stdout.count("ready True") == 2

    again = stream_app("services", "up", env=own_services)
    assert again.returncode == 0
    assert "kafka: jars cached" in again.stdout
    assert "cassandra: jars cached" in again.stdout
    assert again.stdout.count("already running") == 2

    down = stream_app("services", "down", env=own_services)
    assert down.returncode == 0, down.stderr
    assert "kafka: stopped" in down.stdout
    assert "cassandra: stopped" in down.stdout
    assert project_jvms(home) == []
    status = stream_app("services", "status", env=own_services)
    assert status.returncode == 1
    assert status.stdout.count("not running") == 2

    # A restart reuses the jars and the data: nothing is downloaded, the broker keeps its id.
    restart = stream_app("services", "up", "kafka", env=own_services)
    assert restart.returncode == 0, restart.stderr
    assert "kafka: jars cached" in restart.stdout
    assert "fetched" not in restart.stdout
    assert "kafka: ready in" in restart.stdout


def test_readiness_timeout_prints_the_log_and_leaves_nothing_running(
    stream_app: Run, own_services: dict[str, str]
) -> None:
    home = Path(own_services["STREAM_APP_SERVICES__HOME"])
    env = {**own_services, "STREAM_APP_SERVICES__START_TIMEOUT_S": "0.5"}
    up = stream_app("services", "up", "cassandra", env=env)
    assert up.returncode == 1
    assert "cassandra not ready after 0 s" in up.stderr or "not ready after" in up.stderr
    assert "--- last lines of" in up.stderr
    assert project_jvms(home) == []
