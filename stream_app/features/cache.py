"""A read-through cache in front of the feature store, with a freshness bound.

An entity's features are served from the cache only if they were read from Cassandra less than
``max_age_ms`` ago, so a cached value is never more than that older than a direct read would
be; feature age is still measured from the features' own event time. Entries past half their
life are refreshed in the background while still being served (stale-while-revalidate inside
the bound), so busy entities never make a batch wait for Cassandra. ``max_age_ms = 0`` turns
the cache off.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from stream_app.features.vector import StoredFeature

EntityKey = tuple[str, str]
Features = dict[str, StoredFeature]
Reader = Callable[[list[EntityKey]], Awaitable[dict[EntityKey, Features]]]

log = logging.getLogger(__name__)


class FeatureReader(Protocol):
    """Where the scoring path reads the stored features of many entities (``FeatureCache``
    over the Cassandra store)."""

    async def get_many(self, keys: Iterable[EntityKey]) -> dict[EntityKey, Features]: ...


class FeatureCache:
    """Entity features by (entity key, entity id), each with the time it was read."""

    def __init__(self, read: Reader, max_age_ms: int, max_entries: int = 200_000) -> None:
        self._read = read
        self.max_age_ms = max_age_ms
        self.refresh_after_ms = max_age_ms / 2
        self.max_entries = max_entries
        self._entries: dict[EntityKey, tuple[float, Features]] = {}
        self._refreshing: set[EntityKey] = set()
        self._background: set[asyncio.Task[None]] = set()
        self.hits = 0
        self.misses = 0

    async def get_many(self, keys: Iterable[EntityKey]) -> dict[EntityKey, Features]:
        """Features of every key: cached ones within the bound, the rest read now."""
        wanted = list(dict.fromkeys(keys))
        if self.max_age_ms <= 0:
            self.misses += len(wanted)
            return await self._read(wanted)
        now = time.monotonic() * 1000
        found: dict[EntityKey, Features] = {}
        expired: list[EntityKey] = []
        aging: list[EntityKey] = []
        for key in wanted:
            entry = self._entries.get(key)
            if entry is None or now - entry[0] >= self.max_age_ms:
                expired.append(key)
                continue
            found[key] = entry[1]
            if now - entry[0] >= self.refresh_after_ms and key not in self._refreshing:
                aging.append(key)
        self.hits += len(found)
        self.misses += len(expired)
        if aging:
            self._refresh_in_background(aging)
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

    def _refresh_in_background(self, keys: list[EntityKey]) -> None:
        self._refreshing.update(keys)

        async def refresh() -> None:
            started = time.monotonic() * 1000
            try:
                self._store(await self._read(keys), started)
            except Exception as exc:  # the entry expires and is then read in the foreground
                log.debug("background feature refresh failed: %s", exc)
            finally:
                self._refreshing.difference_update(keys)

        task = asyncio.ensure_future(refresh())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
