"""No-loss accounting of a chaos run (pure)."""

from __future__ import annotations

from stream_app.bench.accounting import Sent, account, longest_gap_s

SENT = {
    (0, 0): Sent("a", True),
    (0, 1): Sent("b", True),
    (1, 0): Sent("c", False),  # invalid: a dead letter is its outcome
    (1, 1): Sent("d", True),
}


def test_every_event_with_one_outcome_is_accounted() -> None:
    result = account(SENT, [("a", "champion", "pa"), ("b", "champion", "pb"),
                            ("d", "champion", "pd")], [(1, 0)], [1_000, 1_500, 4_000])  # fmt: skip
    assert result.lost == 0
    assert result.duplicates == 0
    assert (result.events, result.sent_invalid) == (4, 1)
    assert (result.predicted, result.dead_lettered) == (3, 1)
    assert result.longest_pause_s == 2.5


def test_missing_outcomes_are_lost_and_repeats_are_duplicates() -> None:
    result = account(
        SENT,
        [
            ("a", "champion", "pa"),
            ("a", "champion", "pa"),
            ("a", "challenger", "pa2"),
            ("d", "champion", "pd"),
        ],
        [(1, 0), (1, 0)],
        [],
    )
    assert result.lost == 1  # b
    assert result.duplicates == 2  # a's second champion prediction, c's second dead letter
    assert result.duplicates_with_other_ids == 0  # a's copies share their prediction id
    assert result.predicted == 2


def test_copies_with_different_ids_cannot_be_dropped_by_id() -> None:
    # re-scored after a promotion: another version, so another prediction id
    result = account({(0, 0): Sent("a", True)},
                     [("a", "champion", "v1-a"), ("a", "champion", "v2-a")], [], [])  # fmt: skip
    assert result.duplicates == 1
    assert result.duplicates_with_other_ids == 1


def test_a_valid_event_dead_lettered_is_not_lost() -> None:
    result = account({(0, 0): Sent("a", True)}, [], [(0, 0)], [])
    assert result.lost == 0
    assert result.dead_lettered == 1


def test_longest_gap() -> None:
    assert longest_gap_s([]) == 0.0
    assert longest_gap_s([5_000, 1_000, 2_000]) == 3.0
