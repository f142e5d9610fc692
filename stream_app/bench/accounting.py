"""No-loss accounting: did every client event sent end with exactly one outcome? (pure)

An outcome is a prediction of its event (by event id, per model role) or a dead-letter record
of its message (by source partition and offset). A sent record with neither is lost; an
outcome seen more than once is a duplicate (each extra copy counts once). Downstream
consumers can drop duplicate predictions by their ``prediction_id`` (the same event and
version always give the same id); ``duplicates_with_other_ids`` counts the outcomes whose
copies do not share one id, which such a consumer could not drop.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from itertools import pairwise
from typing import Any, NamedTuple


class Sent(NamedTuple):
    """A client event the broker acknowledged, and whether it was meant to be valid."""

    event_id: str
    valid: bool


@dataclass
class Accounting:
    events: int
    sent_invalid: int
    predicted: int  # events with at least one live prediction
    dead_lettered: int  # events with at least one dead-letter record
    lost: int
    duplicates: int
    duplicates_with_other_ids: int
    longest_pause_s: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def longest_gap_s(stamps_ms: Iterable[int]) -> float:
    """The longest time between two consecutive outputs (CreateTime), in seconds."""
    ordered = sorted(stamps_ms)
    if len(ordered) < 2:
        return 0.0
    return max(b - a for a, b in pairwise(ordered)) / 1000


def account(
    sent: Mapping[tuple[int, int], Sent],
    predictions: Iterable[tuple[str, str, str]],
    dead_letters: Iterable[tuple[int, int]],
    output_stamps_ms: Iterable[int],
) -> Accounting:
    """``sent``: (partition, offset) -> the event; ``predictions``: (event id, role,
    prediction id) of every prediction record read; ``dead_letters``: (source partition,
    source offset) of every dead-letter record of the input topic."""
    predictions = list(predictions)
    predicted = Counter((event_id, role) for event_id, role, _ in predictions)
    ids: dict[tuple[str, str], set[str]] = {}
    for event_id, role, prediction_id in predictions:
        ids.setdefault((event_id, role), set()).add(prediction_id)
    dead = Counter(dead_letters)
    roles_of: dict[str, int] = Counter(event_id for event_id, _ in predicted)
    lost = 0
    with_prediction = 0
    with_dead_letter = 0
    for place, event in sent.items():
        has_prediction = roles_of.get(event.event_id, 0) > 0
        has_dead_letter = dead.get(place, 0) > 0
        with_prediction += has_prediction
        with_dead_letter += has_dead_letter
        if not has_prediction and not has_dead_letter:
            lost += 1
    duplicates = sum(n - 1 for n in predicted.values()) + sum(n - 1 for n in dead.values())
    return Accounting(
        events=len(sent),
        sent_invalid=sum(not e.valid for e in sent.values()),
        predicted=with_prediction,
        dead_lettered=with_dead_letter,
        lost=lost,
        duplicates=duplicates,
        duplicates_with_other_ids=sum(len(copies) > 1 for copies in ids.values()),
        longest_pause_s=longest_gap_s(output_stamps_ms),
    )
