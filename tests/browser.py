"""Debian's headless chromium, for tests that look at a page the way a browser builds it."""

from __future__ import annotations

import shutil
import subprocess
import tempfile


def find_chromium() -> str:
    """The chromium executable; the test fails, saying how to install it, when there is none."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is not installed: run `make browser`"
    return chromium


def dump_dom(url: str, budget_ms: int = 5000) -> str:
    """The DOM of ``url`` as chromium serialises it after ``budget_ms`` of virtual time.

    A throw-away profile, and no network of chromium's own (updates, sync, QUIC), so only the
    page's requests are made.
    """
    chromium = find_chromium()
    with tempfile.TemporaryDirectory() as profile:
        page = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}",
             "--dump-dom", url],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert page.returncode == 0, page.stderr[-2000:]
    return page.stdout
