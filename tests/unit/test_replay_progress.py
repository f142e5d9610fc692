"""The progress line of long commands (pure formatting)."""

from __future__ import annotations

import io

from stream_app.progress import ProgressBar, clock, render


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
