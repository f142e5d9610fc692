"""The background-process mechanics of `services`, with real (tiny) processes."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream_app.errors import ServiceError, ServiceNotReady
from stream_app.services import process
from stream_app.services.process import ServiceSpec
from tests.conftest import free_port

START_UP_S = 0.6  # the toy service's start-up before its ready line


def _spec(
    tmp_path: Path, script: str, probe_ok: bool = True, port: int | None = None
) -> ServiceSpec:
    def probe() -> None:
        if not probe_ok:
            raise ConnectionError("probe refused")

    log = tmp_path / "console.log"
    return ServiceSpec(
        name="toy",
        port=port or free_port(),
        command=["sh", "-c", script],
        run_dir=tmp_path / "run",
        console_log=log,
        server_log=tmp_path / "server.log",
        ready_line="toy is up",
        probe=probe,
    )


@pytest.fixture
def running(tmp_path: Path) -> Iterator[ServiceSpec]:
    spec = _spec(tmp_path, f"sleep {START_UP_S}; echo 'toy is up'; exec sleep 60")
    yield spec
    process.stop(spec, timeout_s=5)


def test_start_wait_status_stop(running: ServiceSpec) -> None:
    proc = process.start(running)
    assert proc is not None
    waited = process.wait_ready(running, proc, timeout_s=10)
    assert START_UP_S <= waited < START_UP_S + 2  # it waited for the ready line, then polled
    assert process.owned_pid(running) == proc.process.pid
    status = process.status(running)
    assert (status.pid, status.ready) == (proc.pid, True)

    assert process.start(running) is None  # already running: nothing started

    assert process.stop(running, timeout_s=5) is True
    assert process.owned_pid(running) is None
    assert not running.pid_file.exists()
    assert proc.process.poll() is not None  # the process really exited
    assert process.stop(running, timeout_s=5) is False


def test_a_stale_pid_file_is_not_trusted(running: ServiceSpec) -> None:
    running.run_dir.mkdir(parents=True)
    proc = process.start(running)
    assert proc is not None
    # Same pid, different start time: a recycled pid must never be signalled.
    running.pid_file.write_text(f"{proc.pid} 1\n")
    assert process.owned_pid(running) is None
    assert process.stop(running, timeout_s=1) is False
    assert proc.process.poll() is None  # untouched
    proc.process.kill()
    proc.process.wait()


def test_a_process_that_dies_reports_its_log(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "echo 'fatal: cannot bind'; exit 3")
    proc = process.start(spec)
    assert proc is not None
    with pytest.raises(ServiceNotReady, match="exited with code 3") as err:
        process.wait_ready(spec, proc, timeout_s=10)
    assert "fatal: cannot bind" in str(err.value)
    assert not spec.pid_file.exists()


def test_timeout_reports_the_log_tail(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "echo 'still warming up'; exec sleep 60")
    proc = process.start(spec)
    assert proc is not None
    try:
        with pytest.raises(ServiceNotReady, match="not ready after 1 s") as err:
            process.wait_ready(spec, proc, timeout_s=1)
        assert "still warming up" in str(err.value)
    finally:
        process.stop(spec, timeout_s=5)


def test_not_ready_while_the_probe_fails(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "echo 'toy is up'; exec sleep 60", probe_ok=False)
    proc = process.start(spec)
    assert proc is not None
    try:
        with pytest.raises(ServiceNotReady, match="probe refused"):
            process.wait_ready(spec, proc, timeout_s=1.5)
        status = process.status(spec)
        assert status.ready is False
        assert "probe refused" in status.detail
    finally:
        process.stop(spec, timeout_s=5)


def test_a_port_held_by_a_stranger_is_refused(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        spec = _spec(tmp_path, "exec sleep 60", port=listener.getsockname()[1])
        with pytest.raises(ServiceError, match="did not start"):
            process.start(spec)
        assert process.status(spec).detail.startswith("port")


def test_sigterm_ignored_means_sigkill(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "trap '' TERM; echo 'toy is up'; while true; do sleep 0.1; done")
    proc = process.start(spec)
    assert proc is not None
    process.wait_ready(spec, proc, timeout_s=10)
    assert process.stop(spec, timeout_s=0.5) is True
    assert proc.process.poll() is not None


def test_log_tail_of_a_missing_file(tmp_path: Path) -> None:
    assert "does not exist" in process.log_tail(tmp_path / "nope.log")


def test_a_ready_line_left_by_an_earlier_run_does_not_count(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "exec sleep 60")
    spec.console_log.write_text("toy is up\n")  # the previous run's log
    spec.server_log.write_text("toy is up\n")
    started = process.start(spec)
    assert started is not None
    try:
        with pytest.raises(ServiceNotReady, match="has not yet reported start-up"):
            process.wait_ready(spec, started, timeout_s=1)
    finally:
        process.stop(spec, timeout_s=5)


def test_a_log_rolled_over_during_start_up_still_shows_the_ready_line(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("an earlier run: toy is up\n" * 100)
    mark = process.LogMark.of(log)
    with log.open("a") as old:  # this run writes to the old file, then rolls it over
        old.write("starting\n")
    log.rename(tmp_path / "server.log.1")
    log.write_text("toy is up\n")  # shorter than the mark: read from its first byte
    assert process.written_since(log, mark) == "starting\ntoy is up\n"

    mark = process.LogMark.of(log)
    with log.open("a") as old:  # the ready line went to the file before it rolled
        old.write("toy is up again\n")
    log.rename(tmp_path / "server.log.2")
    log.write_text("")
    assert process.written_since(log, mark) == "toy is up again\n"


def test_a_log_that_did_not_exist_counts_from_its_first_byte(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    mark = process.LogMark.of(log)
    log.write_text("toy is up\n")
    assert process.written_since(log, mark) == "toy is up\n"
