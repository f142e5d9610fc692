"""Back-off for outages: wait longer after each failure, up to a cap, and never give up.

Used where giving up would lose accepted work (Cassandra writes of predictions, feature reads
during an outage, Kafka deliveries): the worker pauses instead, and resumes by itself.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


def backoff_delays(initial_s: float, max_s: float, attempt: int, jitter: float = 0.2) -> float:
    """The wait before retry number ``attempt`` (0-based): doubling, capped, with jitter."""
    base: float = min(max_s, initial_s * (2**attempt))
    return base * (1 - jitter + 2 * jitter * random.random())


async def retry_forever(
    action: Callable[[], Awaitable[T]],
    is_retryable: Callable[[BaseException], bool],
    what: str,
    initial_s: float,
    max_s: float,
    on_retry: Callable[[BaseException, int], None] | None = None,
) -> T:
    """Run ``action`` until it succeeds; retryable failures wait and retry, others raise."""
    attempt = 0
    while True:
        try:
            return await action()
        except Exception as exc:
            if not is_retryable(exc):
                raise
            delay = backoff_delays(initial_s, max_s, attempt)
            log.warning("%s failed (%s: %s); retry %d in %.1f s", what, type(exc).__name__,
                        exc, attempt + 1, delay)  # fmt: skip
            if on_retry is not None:
                on_retry(exc, attempt)
            attempt += 1
            await asyncio.sleep(delay)
