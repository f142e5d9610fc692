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


def test_a_clusters_node_scenarios_are_judged_on_their_longest_pause_and_eos_on_copies() -> None:
    from stream_app.bench.chaos import summarise

    def run(scenario: str, pause: float, duplicates: int = 0) -> dict[str, object]:
        return {"scenario": scenario, "lost": 0, "duplicates": duplicates,
                "longest_pause_s": pause, "crashes": 0}  # fmt: skip

    runs = [run("broker", 9.5), run("cassandra-node", 16.0), run("rolling", 40.0, 3)]
    result = summarise(runs, 300, 60, 1, "logs", "exactly_once")  # type: ignore[arg-type]
    targets = result["targets_met"]
    assert targets["broker: longest pause < 15 s"] is True
    assert targets["cassandra-node: longest pause < 15 s"] is False
    assert not any("rolling: longest pause" in t for t in targets)
    assert targets["rolling: duplicates == 0 in every run"] is False
    assert (result["guarantee"], result["duplicates"]) == ("exactly_once", 3)


def test_a_clusters_scenarios_are_refused_on_a_single_node_in_one_line() -> None:
    import pytest

    from stream_app.bench import chaos
    from stream_app.errors import BenchError
    from stream_app.settings import Settings
    from stream_app.use_cases.spec import load_use_case

    with pytest.raises(BenchError, match="need the local cluster"):
        chaos.run(Settings(), load_use_case("delivery_eta"), ["kill", "broker"])
