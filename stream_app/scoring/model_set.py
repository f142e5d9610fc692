"""The models a scoring worker serves at one moment, and how live traffic is split between them.

- the champion scores every event not sent to a challenger;
- each challenger with a share of traffic (A/B/N: any number of them, their shares summing to
  at most 1, the champion taking the rest) scores the events whose split-key entity hashes
  into its range: the same entity always goes to the same model, in every worker;
- a shadow scores every live-scored event again; its predictions go to their own topic and
  never replace the live ones.

A ``ModelSet`` is immutable: a swap replaces the whole set, and a batch keeps the set it
started with, so every event is scored by exactly one live model and at most one shadow.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stream_app.features.vector import FeatureVectorBuilder
from stream_app.models.scorer import Scorer

_SCALE = float(2**64)


@dataclass(frozen=True)
class ScoringModel:
    """A loaded model with the vector builder for its column order."""

    scorer: Scorer
    builder: FeatureVectorBuilder
    feature_set: str
    role: str = "champion"  # what its predictions say: champion, challenger or shadow
    slot: str = ""  # its registry role (challenger-2 for a second challenger); default: role

    def __post_init__(self) -> None:
        if not self.slot:
            object.__setattr__(self, "slot", self.role)

    @property
    def version(self) -> str:
        return self.scorer.version


@dataclass(frozen=True)
class Arm:
    """A challenger with its share of live traffic (0: it holds the role but scores nothing
    live); its registry role slot (``challenger``, ``challenger-2``, ...) is its model's."""

    model: ScoringModel
    fraction: float = 0.0


@dataclass(frozen=True)
class ModelSet:
    """Champion, any number of challengers each on its share of traffic (A/B/N), and an
    optional shadow."""

    champion: ScoringModel
    challengers: tuple[Arm, ...] = ()
    shadow: ScoringModel | None = None

    def roles(self) -> dict[str, str]:
        """Version per role slot held (a challenger without traffic included)."""
        held = {"champion": self.champion.version}
        for arm in self.challengers:
            held[arm.model.slot] = arm.model.version
        if self.shadow is not None:
            held["shadow"] = self.shadow.version
        return held

    def traffic(self) -> dict[str, float]:
        """Share of live traffic per role slot; the champion takes what the challengers
        leave, so the shares sum to 1."""
        shares = {arm.model.slot: arm.fraction for arm in self.challengers}
        return {"champion": max(0.0, 1.0 - sum(shares.values())), **shares}

    @property
    def live_arms(self) -> tuple[Arm, ...]:
        """The challengers that take live traffic, in the order their ranges are laid out."""
        return tuple(arm for arm in self.challengers if arm.fraction > 0)

    @property
    def splits_traffic(self) -> bool:
        return bool(self.live_arms)


def traffic_bucket(entity_id: str) -> float:
    """A stable number in [0, 1) for an entity id: the same in every process and run."""
    digest = hashlib.blake2b(entity_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def split_traffic(entity_ids: Sequence[str], fractions: Sequence[float]) -> list[int]:
    """Per event: the index of the arm its entity belongs to (-1: the champion). Arm ``i``
    takes the entities whose bucket falls in ``[sum(fractions[:i]), sum(fractions[:i+1]))``,
    so adding an arm after the others never moves an entity between the existing ones."""
    if not fractions or sum(fractions) <= 0:
        return [-1] * len(entity_ids)
    bounds = np.cumsum(np.asarray(fractions, dtype=np.float64))
    chosen: dict[str, int] = {}
    result = []
    for entity_id in entity_ids:
        arm = chosen.get(entity_id)
        if arm is None:
            index = int(np.searchsorted(bounds, traffic_bucket(entity_id), side="right"))
            arm = chosen[entity_id] = index if index < len(bounds) else -1
        result.append(arm)
    return result
