"""LightGBM is imported without scikit-learn (a second per process), which stays importable."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
from stream_app.models.lgb import lgb
assert "sklearn" not in sys.modules, "scikit-learn was imported with LightGBM"
import numpy as np
data = lgb.Dataset(np.arange(40.0).reshape(20, 2), np.arange(20.0))
booster = lgb.train({"verbose": -1}, data, 3)
assert booster.predict(np.array([[1.0, 2.0]])).shape == (1,)
import sklearn  # still importable by whoever needs it
print("ok")
"""


def test_lightgbm_comes_without_scikit_learn_and_scikit_learn_stays_importable() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
