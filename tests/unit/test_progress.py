"""The progress bar and status line of long commands (pure formatting)."""

from __future__ import annotations

import io

from stream_app.progress import ProgressBar, StatusLine, clock, render


def test_clock() -> None:
    assert clock(0) == "0:00"
    assert clock(65) == "1:05"
    assert clock(3725) == "1:02:05"
    assert clock(float("nan")) == "?"


def test_the_line_has_share_counts_rate_and_eta() -> None:
    line = render(25_000, 100_000, 2.0)
    assert line.startswith("[######..................]  25% 25,000/100,000 records")
    assert "12,500/s" in line
    assert line.endswith("ETA 0:06")
    assert render(0, 10, 0.0).endswith("ETA ?")


def test_into_a_pipe_it_writes_whole_lines() -> None:
    stream = io.StringIO()
    bar = ProgressBar(10, stream=stream)
    bar(10)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert lines
    assert all(line.startswith("[") for line in lines)
    assert "\r" not in stream.getvalue()
    assert lines[-1].split()[2] == "10/10"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_status_line_into_a_pipe_writes_a_few_whole_lines() -> None:
    stream = io.StringIO()
    line = StatusLine(stream)
    for n in range(1000):
        line(f"history: {n} events")
    line.close()
    written = stream.getvalue()
    assert "\r" not in written
    # the first and the last, not one per call: into a pipe, every few seconds at most
    assert written.splitlines() == ["history: 0 events", "history: 999 events"]


def test_a_status_line_on_a_terminal_redraws_in_place_and_ends_the_line() -> None:
    stream = Terminal()
    line = StatusLine(stream, every_s=0.0)
    line("one")
    line("two")
    line.close()
    assert stream.getvalue() == "\rone\rtwo\n"


def test_a_status_line_never_shown_writes_nothing() -> None:
    stream = Terminal()
    StatusLine(stream).close()
    assert stream.getvalue() == ""
