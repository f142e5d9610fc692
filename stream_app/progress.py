"""A progress bar for long commands: done of total, rate and time left, on stderr.

On a terminal the line redraws in place a few times a second; into a file or a pipe a line is
written every few seconds, so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def clock(seconds: float) -> str:
    """``1:05`` or ``2:03:04``; ``?`` when unknown."""
    if seconds != seconds or seconds == float("inf"):
        return "?"
    whole = int(seconds + 0.5)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def render(done: int, total: int, elapsed_s: float, unit: str = "records", width: int = 24) -> str:
    """One line: bar, percentage, counts, rate and ETA."""
    share = min(done / total, 1.0) if total > 0 else 1.0
    filled = int(share * width)
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    eta = (total - done) / rate if rate > 0 else float("nan")
    return (
        f"[{'#' * filled}{'.' * (width - filled)}] {share:4.0%} {done:,}/{total:,} {unit} "
        f"{rate:,.0f}/s ETA {clock(max(eta, 0.0))}"
    )


class ProgressBar:
    """Call with the count done so far; ``close`` ends the line."""

    def __init__(
        self,
        total: int,
        unit: str = "records",
        stream: TextIO | None = None,
        every_s: float = 0.2,
        label: str = "",
    ) -> None:
        self.total = total
        self.unit = unit
        self.label = f"{label} " if label else ""
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every_s = every_s if self.tty else max(every_s, 2.0)
        self.started = time.monotonic()
        self._last = float("-inf")
        self._done = 0
        self._drawn = -1  # the count last drawn
        self.note = ""  # shown after the figures (e.g. a validation score)

    def __call__(self, done: int, note: str = "") -> None:
        self._done = done
        self.note = note
        now = time.monotonic()
        if now - self._last >= self.every_s or done >= self.total:
            self._last = now
            self._draw()

    def _draw(self) -> None:
        line = self.label + render(self._done, self.total, time.monotonic() - self.started,
                                   self.unit)  # fmt: skip
        if self.note:
            line += f" {self.note}"
        self.stream.write(f"\r{line}" if self.tty else f"{line}\n")
        self.stream.flush()
        self._drawn = self._done

    def close(self) -> None:
        if self._drawn != self._done:  # into a pipe, the last line is not written twice
            self._draw()
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
