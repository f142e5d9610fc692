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


class StatusLine:
    """One line of status on stderr: redrawn in place on a terminal at most every ``every_s``,
    written as a new line every few seconds into a file or a pipe (never a ``\\r`` there)."""

    def __init__(self, stream: TextIO | None = None, every_s: float = 0.2) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every_s = every_s if self.tty else max(every_s, 2.0)
        self._last = float("-inf")
        self._text = ""
        self._shown = ""  # the text last written

    def __call__(self, text: str, force: bool = False) -> None:
        self._text = text
        now = time.monotonic()
        if force or now - self._last >= self.every_s:
            self._last = now
            self._write()

    def _write(self) -> None:
        self.stream.write(f"\r{self._text}" if self.tty else f"{self._text}\n")
        self.stream.flush()
        self._shown = self._text

    def close(self) -> None:
        """Show the latest text (once) and end the line."""
        if self._text and self._shown != self._text:
            self._write()
        if self.tty and self._shown:
            self.stream.write("\n")
            self.stream.flush()


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
        self.line = StatusLine(stream, every_s)
        self.started = time.monotonic()
        self.note = ""  # shown after the figures (e.g. a validation score)

    def __call__(self, done: int, note: str = "") -> None:
        self.note = note
        elapsed = time.monotonic() - self.started
        text = self.label + render(done, self.total, elapsed, self.unit)
        self.line(f"{text} {note}" if note else text, force=done >= self.total)

    def close(self) -> None:
        self.line.close()
