"""What the worker does when one of its own parts fails: exit, so a supervisor restarts it.

A consumer whose loop died while the process lived on looks healthy and scores nothing (found
in acceptance: a scoring consumer's thread died on an exception out of a rebalance callback, and
the worker ran on for minutes without scoring). Every long-lived task and thread of the worker
is therefore supervised: an error the clients recover from is handled where it happens; any
other ends the process with ``CRASH_EXIT_CODE``, without committing the work in hand, so the
next owner of the partitions scores it again (at least once, same prediction ids).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

log = logging.getLogger(__name__)
CRASH_EXIT_CODE = 70

Crash = Callable[[str], Any]


def crash_without_commit(what: str) -> NoReturn:
    """Leave at once, without acknowledging the batch in hand.

    Raising out of an agent would let Faust acknowledge (and later commit) a batch whose
    outputs were never acknowledged; exiting here keeps at-least-once: the next worker to own
    the partitions scores the batch again, with the same prediction ids.
    """
    log.critical("%s: exiting without committing the current batch", what, exc_info=True)
    logging.shutdown()
    sys.stderr.flush()
    os._exit(CRASH_EXIT_CODE)


def supervise(
    task: asyncio.Task[Any],
    what: str,
    stopping: Callable[[], bool],
    crash: Crash = crash_without_commit,
) -> None:
    """Crash the worker when ``task`` (a loop meant to run until stopped) ends on its own."""

    def ended(done: asyncio.Task[Any]) -> None:
        if stopping():
            return
        if done.cancelled():
            crash(f"{what} was cancelled while the worker runs")
            return
        error = done.exception()
        if error is not None:
            log.critical("%s failed", what, exc_info=error)
            crash(f"{what} failed: {type(error).__name__}: {error}")
        else:
            crash(f"{what} stopped while the worker runs")

    task.add_done_callback(ended)
