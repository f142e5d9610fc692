"""`stream-app services up|down|status` for the local Kafka and Cassandra: one broker and one
node, or with ``services.cluster`` a cluster of each (``kafka-1``..., ``cassandra-1``...); and,
when named, a schema registry (``registry``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from stream_app.errors import ConfigurationError, ServiceError
from stream_app.services import process
from stream_app.services.cassandra_server import cassandra_specs
from stream_app.services.jars import ensure_jars, find_java
from stream_app.services.kafka_server import kafka_specs
from stream_app.services.process import ServiceSpec, ServiceStatus
from stream_app.services.registry_server import ensure_registry_app, registry_specs
from stream_app.settings import Settings

SpecsBuilder = Callable[[Settings, Path, Path], list[ServiceSpec]]
SERVICES: dict[str, SpecsBuilder] = {
    "kafka": kafka_specs,
    "cassandra": cassandra_specs,
    "registry": registry_specs,
}
# What `up` starts when no service is named; the registry is opt-in. `down` and `status`
# without names also cover an opt-in service whose process this project started.
DEFAULT_SERVICES = ("kafka", "cassandra")
# Whether a service's processes start together. A cluster's brokers must: their controller
# quorum elects a leader only once most of them run. Cassandra's nodes must not: a node that
# joins while another is joining fails, so each starts once the one before it is ready.
STARTED_TOGETHER = {"kafka": True, "cassandra": False, "registry": True}


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
) -> tuple[dict[str, list[ServiceSpec]], dict[str, bool]]:
    """Each named service's processes (default: every service), and whether its jars were
    fetched now."""
    java = find_java(settings.services.java_home) if fetch else Path("java")
    specs, fetched = {}, {}
    home = settings.services.home
    for name in names or (DEFAULT_SERVICES if fetch else _default_running(settings)):
        lib_dir = home.resolve() / "lib" / name
        if fetch:
            SERVICES[name](settings, lib_dir, java)  # settings it cannot run: before any download
            began = time.monotonic()
            if name == "registry":
                lib_dir, fetched[name] = ensure_registry_app(home, java)
                what = "app built into", "app cached in"
            else:
                lib_dir, fetched[name] = ensure_jars(name, home)
                what = "jars fetched into", "jars cached in"
            if fetched[name]:
                log(f"{name}: {what[0]} {lib_dir} in {time.monotonic() - began:.1f} s")
            else:
                log(f"{name}: {what[1]} {lib_dir}")
        specs[name] = SERVICES[name](settings, lib_dir, java)
    return specs, fetched


def _default_running(settings: Settings) -> list[str]:
    """The default services, and each opt-in one whose process this project started."""
    names = list(DEFAULT_SERVICES)
    for name in SERVICES.keys() - set(DEFAULT_SERVICES):
        lib_dir = settings.services.home.resolve() / "lib" / name
        try:
            specs = SERVICES[name](settings, lib_dir, Path("java"))
        except (ConfigurationError, ServiceError):  # not one `services` could run here
            continue
        if any(process.owned_pid(spec) is not None for spec in specs):
            names.append(name)
    return names


def start_waves(specs: dict[str, list[ServiceSpec]]) -> list[list[ServiceSpec]]:
    """The processes in groups started together, each group once the one before is ready:
    every service's first process (all of a cluster's brokers) in the first group, a
    cluster's next Cassandra node in each next one."""
    waves: list[list[ServiceSpec]] = []
    for name, processes in specs.items():
        groups = [processes] if STARTED_TOGETHER[name] else [[spec] for spec in processes]
        for index, group in enumerate(groups):
            if index == len(waves):
                waves.append([])
            waves[index].extend(group)
    return waves


def up(
    settings: Settings, names: Sequence[str] = (), log: Callable[[str], None] = print
) -> list[UpResult]:
    """Fetch the jars if needed, start the servers (default: Kafka and Cassandra) and wait
    until they are ready.

    A service already started by this project is left as it is. If one fails to become ready,
    the processes this call started are stopped again and the error carries the log's tail.
    """
    specs, fetched = _specs(settings, names, fetch=True, log=log)
    service_of = {spec.name: name for name, group in specs.items() for spec in group}
    started: list[ServiceSpec] = []
    results = []
    try:
        for wave in start_waves(specs):
            waiting: list[tuple[ServiceSpec, process.Started, float]] = []
            for spec in wave:
                began = time.monotonic()
                proc = process.start(spec)
                was_fetched = fetched[service_of[spec.name]]
                if proc is None:
                    pid = process.owned_pid(spec) or 0
                    log(f"{spec.name}: already running (pid {pid}, {_address(spec)})")
                    results.append(UpResult(spec.name, pid, was_fetched, True, 0.0))
                else:
                    where = f"pid {proc.pid}, {_address(spec)}"
                    log(f"{spec.name}: started ({where}), waiting for readiness")
                    started.append(spec)
                    waiting.append((spec, proc, began))
            for spec, proc, began in waiting:
                process.wait_ready(spec, proc, settings.services.start_timeout_s)
                took = time.monotonic() - began
                log(f"{spec.name}: ready in {took:.1f} s")
                results.append(
                    UpResult(spec.name, proc.pid, fetched[service_of[spec.name]], False, took)
                )
    except ServiceError:  # not ready, or a port taken: stop what this call started
        _stop_all(started, settings.services.stop_timeout_s)
        raise
    return results


def _address(spec: ServiceSpec) -> str:
    return f"port {spec.port}" if spec.host == "127.0.0.1" else f"{spec.host}:{spec.port}"


def _stop_all(specs: Sequence[ServiceSpec], timeout_s: float) -> list[bool]:
    """Stop the processes side by side (whether each was running): the last broker of a
    cluster stopped alone would wait for a controller quorum that has already gone."""
    if len(specs) <= 1:
        return [process.stop(spec, timeout_s) for spec in specs]
    with ThreadPoolExecutor(max_workers=len(specs)) as pool:
        return list(pool.map(lambda spec: process.stop(spec, timeout_s), specs))


def down(
    settings: Settings, names: Sequence[str] = (), log: Callable[[str], None] = print
) -> list[str]:
    """Stop the servers this project started (by pid file) and wait for them to exit."""
    specs, _ = _specs(settings, names, fetch=False)
    stopped = []
    for group in reversed(list(specs.values())):  # Cassandra first: it takes longest to drain
        pids = [process.owned_pid(spec) for spec in group]
        for spec, pid, was_running in zip(
            group, pids, _stop_all(group, settings.services.stop_timeout_s), strict=True
        ):
            if was_running:
                log(f"{spec.name}: stopped (pid {pid})")
                stopped.append(spec.name)
            else:
                log(f"{spec.name}: not running")
    return stopped


def processes(settings: Settings) -> dict[str, ServiceSpec]:
    """Every local server process by name (``kafka``, or ``kafka-1``... in a cluster), ready
    to be stopped, killed or started one at a time (the chaos benchmarks do)."""
    specs, _ = _specs(settings, (), fetch=True, log=lambda _: None)
    return {spec.name: spec for group in specs.values() for spec in group}


def start_one(settings: Settings, spec: ServiceSpec) -> float:
    """Start one process (if it is not running) and wait until it is ready; seconds taken."""
    began = time.monotonic()
    started = process.start(spec)
    if started is not None:
        process.wait_ready(spec, started, settings.services.start_timeout_s)
    return time.monotonic() - began


def status(settings: Settings, names: Sequence[str] = ()) -> list[ServiceStatus]:
    """Pid, port and readiness of each server (each process of a cluster)."""
    specs, _ = _specs(settings, names, fetch=False)
    return [process.status(spec) for group in specs.values() for spec in group]
