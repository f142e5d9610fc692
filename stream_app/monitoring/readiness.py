"""Readiness: may this worker be sent work (``/ready``)?

Liveness (``monitoring.liveness``) asks whether the process should be restarted; readiness
asks whether it can serve now. A worker is ready when

- every consumer is ``assigned`` or ``waiting`` for an assignment (a worker with more members
  in its group than the topic has partitions waits, and that is fine); ``starting`` and
  ``draining`` (after SIGTERM) are not ready,
- every use case it scores has a champion loaded, and
- Kafka and Cassandra answer (each tried on a thread, at most every ``every_s``, with a
  timeout: a probe never blocks the event loop or piles up requests on a sick server).

The body names each part and, when not ready, says why in ``reasons``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from stream_app.kafka.consumer import ConsumerState

READY_STATES = frozenset({"assigned", "waiting"})


@dataclass(frozen=True)
class Reach:
    """The last answer of one dependency: ``error`` is None when it answered."""

    error: str | None
    checked_at: float  # monotonic seconds


def judge(
    consumers: list[ConsumerState],
    champions: dict[str, str | None],
    dependencies: dict[str, Reach | None],
) -> tuple[bool, dict[str, Any]]:
    """Whether a worker in this state is ready, and the body that says so (or why not)."""
    reasons = [
        f"the {c.topic} consumer (group {c.group}) is {c.state}"
        for c in consumers
        if c.state not in READY_STATES
    ]
    reasons += [f"use case {name} has no champion loaded" for name, v in champions.items()
                if v is None]  # fmt: skip
    for name, reach in dependencies.items():
        if reach is None:
            reasons.append(f"{name} has not been reached yet")
        elif reach.error is not None:
            reasons.append(f"{name} is unreachable: {reach.error}")
    body = {
        "status": "not ready" if reasons else "ready",
        "reasons": reasons,
        "consumers": [asdict(c) for c in consumers],
        "champions": champions,
        "dependencies": {
            name: "not checked yet" if r is None else r.error or "ok"
            for name, r in dependencies.items()
        },
    }
    return not reasons, body


class Readiness:
    """Gathers what ``judge`` needs from the running worker."""

    def __init__(self, every_s: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s = every_s
        self.clock = clock
        self._consumers: list[Callable[[], ConsumerState]] = []
        self._champions: dict[str, Callable[[], str | None]] = {}
        self._probes: dict[str, Callable[[], None]] = {}
        self._reach: dict[str, Reach | None] = {}
        self._probing: dict[str, asyncio.Task[None]] = {}

    def watch_consumer(self, state: Callable[[], ConsumerState]) -> None:
        self._consumers.append(state)

    def watch_champion(self, use_case: str, version: Callable[[], str | None]) -> None:
        self._champions[use_case] = version

    def watch_dependency(self, name: str, check: Callable[[], None]) -> None:
        """``check()`` (blocking, run on a thread) raises when ``name`` does not answer."""
        self._probes[name] = check
        self._reach[name] = None

    async def report(self) -> tuple[bool, dict[str, Any]]:
        """Ready or not, now. Dependencies answer from their last probe; a probe older than
        ``every_s`` is started again (and waited for when none has answered yet)."""
        first = [self._probe(name) for name, r in self._reach.items() if r is None]
        if first:
            await asyncio.wait(first)
        now = self.clock()
        for name, reach in self._reach.items():
            if reach is not None and now - reach.checked_at >= self.every_s:
                self._probe(name)
        return judge(
            [state() for state in self._consumers],
            {name: version() for name, version in self._champions.items()},
            dict(self._reach),
        )

    def _probe(self, name: str) -> asyncio.Task[None]:
        """Start a probe of ``name`` unless one is running; returns the running one."""
        running = self._probing.get(name)
        if running is not None and not running.done():
            return running
        task = asyncio.ensure_future(self._run_probe(name))
        self._probing[name] = task
        return task

    async def _run_probe(self, name: str) -> None:
        try:
            await asyncio.to_thread(self._probes[name])
            error = None
        except Exception as exc:  # any failure to answer is "unreachable", with its reason
            error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        self._reach[name] = Reach(error, self.clock())
