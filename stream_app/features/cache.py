"""A read-through cache in front of the feature store, with a freshness bound.

An entity's features are served from the cache only if they were read from Cassandra less than
``max_age_ms`` ago, so a cached value is never more than that older than a direct read would
be; feature age is still measured from the features' own event time. ``max_age_ms = 0`` turns
the cache off.

An entry served from the cache (a hit) is read again in the background once it is
``REFRESH_AT`` (0.7) through its life, while still being served (stale-while-revalidate inside
the bound): an entity served more than once per bound never makes a batch wait for Cassandra
again, and one no longer served is refreshed once more at most, then expires. An entity
served once per bound or less is read when served, as without refreshes: refreshing it after
its read too doubled the reads of such entities, for nothing. Refreshes falling due within
``max_age_ms / 10`` of each other are read together, in one round of a few queries of many
ids (those due before the next round, so up to a tenth of the bound early).

Measured, and why it is built so. Before, an entry was refreshed only when a batch served it
in the second half of its life, and each batch refreshed its own entries: for the shipped
delivery use case (three entity keys, three pane groups) up to six queries per batch, and each
query costs the worker's loop and Cassandra's cores far more than one more id in an ``IN``
(0.5 to 1.2 ms of CPU a request in the driver, measured). And a courier served three times a
second was often not served in that half, so it expired and the next batch waited for its
read: at 1,000 events/s the features stage's median was 5.9 to 14.3 ms in four runs, and
0.08 to 0.19 ms after (README, "Latency"). A round starts well before an entry expires, so
the bound holds; an entry a failed or late round left behind expires and is read in the
foreground.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from stream_app.features.vector import StoredFeature

EntityKey = tuple[str, str]
Features = dict[str, StoredFeature]
Reader = Callable[[list[EntityKey]], Awaitable[dict[EntityKey, Features]]]

log = logging.getLogger(__name__)
REFRESH_AT = 0.7  # share of its life after which an entry served from the cache is refreshed


class FeatureReader(Protocol):
    """Where the scoring path reads the stored features of many entities (``FeatureCache``
    over the Cassandra store)."""

    async def get_many(self, keys: Iterable[EntityKey]) -> dict[EntityKey, Features]: ...


class FeatureCache:
    """Entity features by (entity key, entity id), each with the time it was read."""

    def __init__(
        self,
        read: Reader,
        max_age_ms: int,
        max_entries: int = 200_000,
        gather_s: float | None = None,
    ) -> None:
        self._read = read
        self.max_age_ms = max_age_ms
        self.refresh_after_ms = max_age_ms * REFRESH_AT
        # refreshes falling due this close together are read in one round (a tenth of the bound)
        self.gather_s = max_age_ms / 10_000 if gather_s is None else gather_s
        self.max_entries = max_entries
        self._entries: dict[EntityKey, tuple[float, Features]] = {}
        self._scheduled: set[EntityKey] = set()  # a refresh due, or being read
        self._due: list[tuple[float, EntityKey]] = []  # (when, key), a heap
        self._ticker: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self.refresh_rounds = 0
        self.hits = 0
        self.misses = 0

    async def get_many(self, keys: Iterable[EntityKey]) -> dict[EntityKey, Features]:
        """Features of every key: cached ones within the bound, the rest read now. Every key
        served from the cache is refreshed once it is ``REFRESH_AT`` through its life."""
        wanted = list(dict.fromkeys(keys))
        if self.max_age_ms <= 0:
            self.misses += len(wanted)
            return await self._read(wanted)
        now = time.monotonic() * 1000
        found: dict[EntityKey, Features] = {}
        expired: list[EntityKey] = []
        for key in wanted:
            entry = self._entries.get(key)
            if entry is None or now - entry[0] >= self.max_age_ms:
                expired.append(key)
                continue
            found[key] = entry[1]
            if key not in self._scheduled:
                self._schedule(key, entry[0] + self.refresh_after_ms)
        self.hits += len(found)
        self.misses += len(expired)
        if expired:
            read = await self._read(expired)
            self._store(read, now)
            found.update(read)
        return found

    def _store(self, read: dict[EntityKey, Features], read_started_ms: float) -> None:
        # Stamped with the time the read began: the bound is never overstated.
        if len(self._entries) + len(read) > self.max_entries:
            self._entries.clear()  # simple bound: start over rather than grow
        for key, features in read.items():
            self._entries[key] = (read_started_ms, features)

    def _schedule(self, key: EntityKey, when_ms: float) -> None:
        self._scheduled.add(key)
        heapq.heappush(self._due, (when_ms, key))
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.ensure_future(self._tick())

    async def _tick(self) -> None:
        """While refreshes are scheduled: every ``gather_s``, read in one round those due
        before the next tick (up to ``gather_s`` early: well inside the bound)."""
        while self._due:
            await asyncio.sleep(self.gather_s)
            until = time.monotonic() * 1000 + self.gather_s * 1000
            keys: list[EntityKey] = []
            while self._due and self._due[0][0] <= until:
                keys.append(heapq.heappop(self._due)[1])
            if keys:
                task = asyncio.ensure_future(self._refresh(keys))
                self._background.add(task)
                task.add_done_callback(self._background.discard)

    async def _refresh(self, keys: list[EntityKey]) -> None:
        self.refresh_rounds += 1
        started = time.monotonic() * 1000
        try:
            self._store(await self._read(keys), started)
        except Exception as exc:  # the entries expire and are then read in the foreground
            log.debug("background feature refresh failed: %s", exc)
        finally:
            # served again, an entry is scheduled anew (one not served again expires)
            self._scheduled.difference_update(keys)
