"""Where files shipped with stream-app (schemas, the services' pom) are found.

In a source checkout (editable install) they are read from the repository; in a wheel,
``schemas/`` is packaged under ``stream_app/_bundled/``.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def bundled_path(relative: str) -> Path:
    """The shipped file or folder at ``relative`` (e.g. ``"schemas/cassandra"``)."""
    for root in (_PACKAGE / "_bundled", _PACKAGE.parent):
        candidate = root / relative
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{relative} is not shipped with this stream-app installation")


def package_file(relative: str) -> Path:
    """A file inside the ``stream_app`` package (e.g. ``monitoring/dashboard.html``)."""
    return _PACKAGE / relative
