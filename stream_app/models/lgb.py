"""LightGBM, imported without scikit-learn.

LightGBM imports scikit-learn at its own import whenever it is installed, for its
scikit-learn API, which stream-app never uses: about a second more for every process that
scores or trains (0.5 s against 1.3 s here). It is hidden for that one import only, so
scikit-learn stays importable afterwards (LightGBM's scikit-learn classes are then its
placeholders, unused here).
"""

from __future__ import annotations

import sys
from types import ModuleType


def _import() -> ModuleType:
    if "lightgbm" in sys.modules:
        return sys.modules["lightgbm"]
    hide = "sklearn" not in sys.modules
    if hide:
        sys.modules["sklearn"] = None  # type: ignore[assignment]  # "not installed"
    try:
        import lightgbm
    finally:
        if hide:
            del sys.modules["sklearn"]
    return lightgbm


lgb = _import()
