"""`stream-app services up|down|status` for the local Kafka broker and Cassandra node."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from stream_app.errors import ServiceNotReady
from stream_app.services import process
from stream_app.services.cassandra_server import cassandra_spec
from stream_app.services.jars import ensure_jars, find_java
from stream_app.services.kafka_server import kafka_spec
from stream_app.services.process import ServiceSpec, ServiceStatus
from stream_app.settings import Settings

SpecBuilder = Callable[[Settings, Path, Path], ServiceSpec]
SERVICES: dict[str, SpecBuilder] = {"kafka": kafka_spec, "cassandra": cassandra_spec}


@dataclass(frozen=True)
class UpResult:
    """What ``up`` did for one service."""

    name: str
    pid: int
    fetched_jars: bool
    already_running: bool
    seconds_to_ready: float


def _specs(
    settings: Settings,
    names: Sequence[str],
    fetch: bool,
    log: Callable[[str], None] = print,
) -> tuple[list[ServiceSpec], dict[str, bool]]:
    java = find_java(settings.services.java_home) if fetch else Path("java")
    specs, fetched = [], {}
    for name in names or list(SERVICES):
        lib_dir = settings.services.home.resolve() / "lib" / name
        if fetch:
            began = time.monotonic()
            lib_dir, fetched[name] = ensure_jars(name, settings.services.home)
            if fetched[name]:
                log(f"{name}: jars fetched into {lib_dir} in {time.monotonic() - began:.1f} s")
            else:
                log(f"{name}: jars cached in {lib_dir}")
        specs.append(SERVICES[name](settings, lib_dir, java))
    return specs, fetched


def up(
    settings: Settings, names: Sequence[str] = (), log: Callable[[str], None] = print
) -> list[UpResult]:
    """Fetch the jars if needed, start the servers (default: all) and wait until they are ready.

    A service already started by this project is left as it is. If one fails to become ready,
    the processes this call started are stopped again and the error carries the log's tail.
    """
    specs, fetched = _specs(settings, names, fetch=True, log=log)
    started: list[tuple[ServiceSpec, process.Started, float]] = []
    results = []
    for spec in specs:
        began = time.monotonic()
        proc = process.start(spec)
        if proc is None:
            pid = process.owned_pid(spec) or 0
            log(f"{spec.name}: already running (pid {pid}, port {spec.port})")
            results.append(UpResult(spec.name, pid, fetched[spec.name], True, 0.0))
        else:
            log(f"{spec.name}: started (pid {proc.pid}, port {spec.port}), waiting for readiness")
            started.append((spec, proc, began))
    try:
        for spec, proc, began in started:
            process.wait_ready(spec, proc, settings.services.start_timeout_s)
            took = time.monotonic() - began
            log(f"{spec.name}: ready in {took:.1f} s")
            results.append(UpResult(spec.name, proc.pid, fetched[spec.name], False, took))
    except ServiceNotReady:
        for spec, _, _ in started:
            process.stop(spec, settings.services.stop_timeout_s)
        raise
    return results


def down(
    settings: Settings, names: Sequence[str] = (), log: Callable[[str], None] = print
) -> list[str]:
    """Stop the servers this project started (by pid file) and wait for them to exit."""
    specs, _ = _specs(settings, names, fetch=False)
    stopped = []
    for spec in reversed(specs):  # Cassandra first: it takes longest to drain
        pid = process.owned_pid(spec)
        if process.stop(spec, settings.services.stop_timeout_s):
            log(f"{spec.name}: stopped (pid {pid})")
            stopped.append(spec.name)
        else:
            log(f"{spec.name}: not running")
    return stopped


def status(settings: Settings, names: Sequence[str] = ()) -> list[ServiceStatus]:
    """Pid, port and readiness of each server."""
    specs, _ = _specs(settings, names, fetch=False)
    return [process.status(spec) for spec in specs]
