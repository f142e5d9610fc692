"""The model interface the scoring path calls, and its LightGBM implementation."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from stream_app.models.lgb import lgb

Matrix = np.ndarray[Any, np.dtype[np.float64]]


class Scorer(Protocol):
    """A loaded model: its version, its column order, and batch prediction."""

    @property
    def version(self) -> str: ...

    @property
    def feature_names(self) -> list[str]: ...

    def predict(self, matrix: Matrix) -> Matrix:
        """One value per row: the regression value, or the positive-class probability."""
        ...


class VersionedScorer:
    """What every scorer implementation shares: its version and column order, checked against
    the number of features its model takes."""

    def __init__(self, version: str, feature_names: list[str], model_features: int) -> None:
        self._version = version
        self._feature_names = list(feature_names)
        if model_features != len(self._feature_names):
            raise ValueError(
                f"model {version} has {model_features} features, "
                f"the registry lists {len(self._feature_names)}"
            )

    @property
    def version(self) -> str:
        return self._version

    @property
    def feature_names(self) -> list[str]:
        return self._feature_names


class LightGBMScorer(VersionedScorer):
    """A LightGBM booster scored on ``threads`` threads: one by default (OpenMP threading
    costs more than it saves on micro-batches, and the worker's event loop shares the core);
    a replay's large batches use every core."""

    kind = "lightgbm"

    def __init__(
        self, version: str, feature_names: list[str], model_text: str, threads: int = 1
    ) -> None:
        self._threads = threads
        self._booster = lgb.Booster(model_str=model_text)
        super().__init__(version, feature_names, self._booster.num_feature())

    def predict(self, matrix: Matrix) -> Matrix:
        result = np.asarray(
            self._booster.predict(matrix, num_threads=self._threads), dtype=np.float64
        )
        return result
