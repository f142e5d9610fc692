"""Ports: the worker refuses a held web port in one line, before anything else; servers of
our own (bench workers, tests') get ports nobody holds, below the ephemeral range; a bench
says what a worker that died printed."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream_app.bench.e2e import last_line
from stream_app.errors import ConfigurationError
from stream_app.runtime.run import run_worker
from stream_app.services.process import QUIET_PORTS, bind_error, free_port
from stream_app.settings import Settings


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port a server listens on for the test's length."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def test_a_held_port_cannot_be_bound_and_a_free_one_can(held_port: int) -> None:
    assert bind_error(held_port) is not None
    assert bind_error(free_port()) is None


def test_the_worker_refuses_a_held_web_port_in_one_line_before_connecting(
    held_port: int,
) -> None:
    # no service listens on these: had the worker gone on, it would fail (or wait) elsewhere
    settings = Settings(
        worker={"web_port": held_port},
        kafka={"bootstrap_servers": f"127.0.0.1:{free_port()}"},
        cassandra={"port": free_port()},
    )
    with pytest.raises(ConfigurationError, match=f"web port 127.0.0.1:{held_port} cannot be"):
        run_worker(settings)


def test_a_block_of_free_ports_is_free_and_below_the_ephemeral_range() -> None:
    first = free_port("127.0.0.1", 10)
    assert QUIET_PORTS.start <= first
    assert first + 10 <= QUIET_PORTS.stop
    assert QUIET_PORTS.stop <= 32768  # Linux hands out 32768-60999 to client connections
    assert all(bind_error(port) is None for port in range(first, first + 10))


def test_a_dead_workers_last_words_are_found_under_the_spinners_codes(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    log.write_bytes(
        b"\x1b[?25l\x08\x1b[?25h OK ^\n"
        b"Traceback (most recent call last):\n"
        b"OSError: [Errno 98] error while attempting to bind on address: address already in use\n"
        b"\x1b[?25h\n"
    )
    assert last_line(log).startswith("OSError: [Errno 98]")
    assert last_line(tmp_path / "missing.log") == "(no log)"
