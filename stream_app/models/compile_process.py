"""Compiling a model version in a child process of its own.

lleaves builds a model's LLVM IR in Python: seconds to tens of seconds holding the GIL (a
399-tree model: 21 to 32 s here). A worker compiling on one of its own threads would stall its
event loop for that long. The worker therefore starts ``python -m
stream_app.models.compile_process MODEL_FILE VERSION CACHE_DIR [--quick]``, which compiles into
the disk cache at a low CPU priority (niceness 10), and then loads the object from the cache
(milliseconds) and checks it against LightGBM as every load does (``models.compiled``).
Processes sharing a cache (the workers of one machine) compile a version once: the others wait
on its lock file and read the object it made.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from stream_app.models.compiled import CompileFailed, compile_model

CHILD_NICENESS = 10  # the compile yields the CPU to scoring
COMPILE_TIMEOUT_S = 900.0
REASONS = ("unavailable", "unsupported", "compile_error", "mismatch")
FAILED = 3  # the child's exit code when lleaves could not compile the model


def compile_elsewhere(
    version: str,
    model_text: str,
    cache_dir: Path,
    quick: bool = False,
    timeout_s: float = COMPILE_TIMEOUT_S,
) -> None:
    """Compile ``version`` into ``cache_dir`` in a child process (``quick``: without inlining,
    unless the optimised object is cached); ``CompileFailed`` (with the child's reason) when
    it could not."""
    with tempfile.TemporaryDirectory(prefix="stream-app-compile-") as folder:
        model_file = Path(folder) / "model.txt"
        model_file.write_text(model_text)
        command = [sys.executable, "-m", __name__, str(model_file), version, str(cache_dir)]
        command += ["--quick"] if quick else []
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired:
            raise CompileFailed("compile_error", f"compiling took over {timeout_s:.0f} s") from None
    if done.returncode == 0:
        return
    lines = done.stderr.strip().splitlines()
    last = lines[-1] if lines else f"compile_error: the compiler exited with {done.returncode}"
    reason, _, detail = last.partition(": ")
    if done.returncode != FAILED or reason not in REASONS:  # it crashed: say how
        reason, detail = "compile_error", f"the compiler exited with {done.returncode}: {last}"
    raise CompileFailed(reason, detail)


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    model_file, version, cache_dir = [a for a in argv if a != "--quick"]
    with contextlib.suppress(OSError):
        os.nice(CHILD_NICENESS)
    folder = Path(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(version.encode()).hexdigest()[:16]
    with (folder / f".{name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process compiling it: its object, read
        try:
            compile_model(version, Path(model_file).read_text(), folder, quick)
        except CompileFailed as e:
            print(f"{e.reason}: {e}", file=sys.stderr)
            return FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
