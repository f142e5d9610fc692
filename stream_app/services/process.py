"""Background JVM processes owned by stream-app: start, readiness, status and stop.

A service started by ``stream-app services up`` leaves a pid file holding its pid and the
kernel's start time of that pid, so ``down`` can never signal an unrelated process that
happens to reuse the number.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from stream_app.errors import ServiceError, ServiceNotReady

LOG_TAIL_LINES = 40


@dataclass(frozen=True)
class ServiceSpec:
    """Everything needed to run one server as a background process.

    ``prepare`` writes its configuration (and formats storage) just before it starts, so that
    describing a service for ``status`` or ``down`` touches nothing. ``provision`` runs once
    the log reports start-up and before each probe until one answers: it creates the clients'
    users on a secured server (idempotent).
    """

    name: str
    port: int
    command: list[str]
    run_dir: Path
    console_log: Path
    server_log: Path
    ready_line: str
    probe: Callable[[], None]
    prepare: Callable[[], None] = lambda: None
    provision: Callable[[], None] = lambda: None
    env: dict[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"  # the address its client port listens on

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"


@dataclass(frozen=True)
class LogMark:
    """Where a log file ended just before the process started: the file (by inode, which a
    rollover renames but keeps) and its size then."""

    inode: int
    size: int

    @classmethod
    def of(cls, path: Path) -> LogMark:
        try:
            found = path.stat()
        except OSError:
            return cls(inode=-1, size=0)
        return cls(inode=found.st_ino, size=found.st_size)


@dataclass(frozen=True)
class Started:
    """A process just started, and where its logs ended before it started."""

    process: subprocess.Popen[bytes]
    log_marks: dict[Path, LogMark]

    @property
    def pid(self) -> int:
        return self.process.pid


@dataclass(frozen=True)
class ServiceStatus:
    """What ``services status`` reports for one service."""

    name: str
    pid: int | None
    port: int
    ready: bool
    detail: str
    host: str = "127.0.0.1"


def stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` from the third on (state, ppid, ...; ``fields[0]``
    is field 3 of proc(5)), or None if the process is gone (or there is no ``/proc``)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; fields after the last ')' are fixed.
    return stat[stat.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU seconds ``pid`` has used, or None if it is gone."""
    fields = stat_fields(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start_ticks(pid: int) -> str | None:
    """The kernel start time of ``pid`` (clock ticks since boot), or None if it is gone."""
    fields = stat_fields(pid)
    if fields is None or fields[0] == "Z":  # a zombie has exited already
        return None
    return fields[19]


def owned_pid(spec: ServiceSpec) -> int | None:
    """The pid of the service this project started, if that process is still alive."""
    try:
        pid_text, ticks = spec.pid_file.read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    if _start_ticks(pid) != ticks:
        return None
    return pid


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def bind_error(port: int, host: str = "127.0.0.1") -> str | None:
    """Why a server could not listen on host:port now (binding as servers do, with
    SO_REUSEADDR), or None if it could."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


# Ports handed out for servers of our own (bench workers, tests' servers): below Linux's
# ephemeral range (32768-60999), from which every client connection takes its local port, so
# a port found free stays free (a bench worker once failed at start-up on a port in that range,
# most likely taken by a connection meanwhile), and clear of the local cluster's 17199 and 19192.
QUIET_PORTS = range(20_000, 32_000)


def free_port(host: str = "127.0.0.1", count: int = 1) -> int:
    """The first of ``count`` consecutive ``QUIET_PORTS`` on ``host`` a server can bind now."""
    for _ in range(200):
        first = random.randrange(QUIET_PORTS.start, QUIET_PORTS.stop - count)
        if all(bind_error(port, host) is None for port in range(first, first + count)):
            return first
    raise ServiceError(f"no {count} consecutive free ports on {host} in {QUIET_PORTS}")


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a log file, or a note that it does not exist."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:])


def start(spec: ServiceSpec) -> Started | None:
    """Start the service in the background; None if this project's copy already runs."""
    if owned_pid(spec) is not None:
        return None
    if port_open(spec.port, spec.host):
        raise ServiceError(
            f"{spec.name}: port {spec.port} on {spec.host} is in use by a process that "
            f"stream-app did not start; stop it or change the port in the settings"
        )
    spec.prepare()
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    spec.console_log.parent.mkdir(parents=True, exist_ok=True)
    # Logs are appended across restarts: readiness only counts what this run writes.
    marks = {log: LogMark.of(log) for log in (spec.server_log, spec.console_log)}
    with spec.console_log.open("ab") as console:
        process = subprocess.Popen(
            spec.command,
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            env={**os.environ, **spec.env},
            start_new_session=True,  # survives the command that started it
        )
    ticks = _start_ticks(process.pid)
    spec.pid_file.write_text(f"{process.pid} {ticks}\n")
    return Started(process, marks)


def wait_ready(spec: ServiceSpec, started_process: Started, timeout_s: float) -> float:
    """Block until the service's log says it started and its probe answers.

    Returns the seconds waited. Raises ``ServiceNotReady`` with the tail of the server's log
    when the process exits or the timeout passes.
    """
    started = time.monotonic()
    deadline = started + timeout_s
    last_error = "its log has not yet reported start-up"
    process, marks = started_process.process, started_process.log_marks
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            spec.pid_file.unlink(missing_ok=True)
            raise ServiceNotReady(_not_ready(spec, f"exited with code {code}"))
        if any(spec.ready_line in written_since(log, mark) for log, mark in marks.items()):
            try:
                spec.provision()
                spec.probe()
                return time.monotonic() - started
            except Exception as exc:  # the probe's client raises its own error types
                last_error = f"probe failed: {exc}"
        time.sleep(0.5)
    raise ServiceNotReady(
        _not_ready(spec, f"not ready after {timeout_s:.0f} s ({last_error}); it is still running")
    )


def written_since(path: Path, mark: LogMark) -> str:
    """What was written to the log at ``path`` since ``mark``, across a rollover: a server
    that rolls its log over while it starts (Kafka's ``server.log`` at 50 MB, say) renames the
    marked file and starts a new one, so the new file counts from its first byte and the
    renamed one (found by its inode beside it) from the mark."""
    current = LogMark.of(path)
    if current.inode == mark.inode:
        return _read(path, mark.size)
    rolled = [
        sibling
        for sibling in path.parent.glob(f"{path.name}*")
        if sibling != path and LogMark.of(sibling).inode == mark.inode
    ]
    return "".join(_read(old, mark.size) for old in rolled) + _read(path, 0)


def _read(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")
    except OSError:
        return ""


def _not_ready(spec: ServiceSpec, what: str) -> str:
    return (
        f"{spec.name} {what}.\n--- last lines of {spec.server_log} ---\n{log_tail(spec.server_log)}"
        f"\n--- last lines of {spec.console_log} ---\n{log_tail(spec.console_log)}"
    )


def status(spec: ServiceSpec) -> ServiceStatus:
    """The pid, port and readiness of the service."""
    pid = owned_pid(spec)
    if pid is None:
        foreign = port_open(spec.port, spec.host)
        detail = f"port {spec.port} held by another process" if foreign else "not running"
        return ServiceStatus(spec.name, None, spec.port, False, detail, spec.host)
    try:
        spec.probe()
    except Exception as exc:  # the probe's client raises its own error types
        detail = f"running, not ready: {exc}"
        return ServiceStatus(spec.name, pid, spec.port, False, detail, spec.host)
    return ServiceStatus(spec.name, pid, spec.port, True, "ready", spec.host)


def stop(spec: ServiceSpec, timeout_s: float, first: int = signal.SIGTERM) -> bool:
    """Stop the process this project started and wait for it to exit.

    Returns False when it was not running. ``first`` first (SIGTERM: both servers shut down
    cleanly on it; SIGKILL: a crash), SIGKILL after ``timeout_s``.
    """
    pid = owned_pid(spec)
    if pid is None:
        spec.pid_file.unlink(missing_ok=True)
        return False
    # The service leads its own process group (start_new_session), so signal the group.
    with contextlib.suppress(ProcessLookupError):  # it may exit between check and signal
        os.killpg(pid, first)
    if not _wait_gone(spec, pid, timeout_s):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        if not _wait_gone(spec, pid, 10.0):
            raise ServiceError(f"{spec.name} (pid {pid}) did not exit after SIGKILL")
    spec.pid_file.unlink(missing_ok=True)
    return True


def kill(spec: ServiceSpec) -> bool:
    """SIGKILL the process at once (a crash, not a shutdown) and wait until it is gone;
    False when it was not running."""
    return stop(spec, 0.0, signal.SIGKILL)


def _wait_gone(spec: ServiceSpec, pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if owned_pid(spec) is None:
            _reap(pid)
            return True
        _reap(pid)
        time.sleep(0.2)
    return False


def _reap(pid: int) -> None:
    """Collect the exit status if the process is our own child (started in this process)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
