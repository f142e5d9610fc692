"""The password of a local server's own administrator, made once by the project.

The broker authenticates to itself, and ``services up`` creates the clients' users, as this
administrator. Its password is random, lives in a file only its owner can read, and never
appears in the settings, the logs or ``status``.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from stream_app.services.private_files import write_private


def admin_password(path: Path) -> str:
    """The password kept in ``path``, made (32 random bytes, URL-safe) if the file is missing."""
    if path.exists():
        return path.read_text().strip()
    password = secrets.token_urlsafe(32)
    write_private(path, (password + "\n").encode())
    return password
