"""The models a scoring worker serves at one moment, and how live traffic is split between them.

- the champion scores every event not sent to the challenger;
- an A/B challenger (``challenger_fraction`` > 0) scores the events whose split-key entity
  hashes below that fraction: the same entity always goes to the same model, in every worker;
- a shadow scores every live-scored event again; its predictions go to their own topic and
  never replace the live ones.

A ``ModelSet`` is immutable: a swap replaces the whole set, and a batch keeps the set it
started with, so every event is scored by exactly one live model and at most one shadow.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from stream_app.features.vector import FeatureVectorBuilder
from stream_app.models.scorer import Scorer

_SCALE = float(2**64)


@dataclass(frozen=True)
class ScoringModel:
    """A loaded model with the vector builder for its column order."""

    scorer: Scorer
    builder: FeatureVectorBuilder
    feature_set: str
    role: str = "champion"

    @property
    def version(self) -> str:
        return self.scorer.version


@dataclass(frozen=True)
class ModelSet:
    """Champion, optional challenger (with its share of traffic) and optional shadow."""

    champion: ScoringModel
    challenger: ScoringModel | None = None
    challenger_fraction: float = 0.0
    shadow: ScoringModel | None = None

    def roles(self) -> dict[str, str]:
        """Version per role held (a challenger without traffic included)."""
        held = {"champion": self.champion.version}
        if self.challenger is not None:
            held["challenger"] = self.challenger.version
        if self.shadow is not None:
            held["shadow"] = self.shadow.version
        return held

    @property
    def splits_traffic(self) -> bool:
        return self.challenger is not None and self.challenger_fraction > 0


def traffic_bucket(entity_id: str) -> float:
    """A stable number in [0, 1) for an entity id: the same in every process and run."""
    digest = hashlib.blake2b(entity_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def to_challenger(entity_ids: Sequence[str], fraction: float) -> list[bool]:
    """Per event: whether its entity belongs to the challenger's share of traffic."""
    if fraction <= 0:
        return [False] * len(entity_ids)
    if fraction >= 1:
        return [True] * len(entity_ids)
    buckets: dict[str, bool] = {}
    result = []
    for entity_id in entity_ids:
        chosen = buckets.get(entity_id)
        if chosen is None:
            chosen = buckets[entity_id] = traffic_bucket(entity_id) < fraction
        result.append(chosen)
    return result
