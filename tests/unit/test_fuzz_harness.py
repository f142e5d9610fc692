"""The fuzz harness of `make fuzz` exists, runs, and finds what it is there to find.

A short run (20,000 inputs from the seeded corpus) is part of `make test`, so the
harness cannot vanish from the repository again, and a decoder that raises anything but a
dead-letter refusal is caught here as well as by the long `make fuzz`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stream_app.contracts.decode import decode_client_event
from stream_app.errors import InvalidEvent

HARNESS = Path(__file__).resolve().parents[1] / "fuzz" / "fuzz_decoders.py"


def test_a_short_fuzz_run_finds_nothing(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    done = subprocess.run(
        [sys.executable, str(HARNESS), "-runs=20000", "-max_len=80000", "-timeout=10",
         f"-artifact_prefix={tmp_path}/", str(corpus)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Done 20000 runs" in done.stderr
    assert len(list(corpus.iterdir())) >= 30  # seeded: examples, corruptions, hostile kinds
    assert not list(tmp_path.glob("crash-*"))


def test_the_harness_reports_a_decoder_that_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("atheris")
    sys.path.insert(0, str(HARNESS.parent))
    try:
        import fuzz_decoders as harness
    finally:
        sys.path.remove(str(HARNESS.parent))

    def broken(raw: bytes | None, max_bytes: int) -> object:
        if raw == b"{}":
            raise KeyError("event_id")  # a bug: not a dead-letter refusal
        return decode_client_event(raw, max_bytes)

    harness.test_one_input(b"\x00{}")  # the real decoder refuses it with a code
    monkeypatch.setattr(harness, "DECODERS", [("client-events", broken)] * 3)
    harness.test_one_input(b"\x00[]")
    with pytest.raises(KeyError):
        harness.test_one_input(b"\x00{}")

    def unknown_code(raw: bytes | None, max_bytes: int) -> object:
        raise InvalidEvent("made_up", "a code no consumer knows")

    monkeypatch.setattr(harness, "DECODERS", [("client-events", unknown_code)] * 3)
    with pytest.raises(AssertionError, match="unknown dead-letter code"):
        harness.test_one_input(b"\x00{}")
