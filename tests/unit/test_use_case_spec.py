"""Use-case specs load, and a broken spec fails at load with the file, the key and why."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from stream_app.errors import ExpressionError, UseCaseError
from stream_app.timeparse import parse_duration_ms
from stream_app.use_cases.spec import AggregateFeature, available_use_cases, load_use_case

SHIPPED = Path(__file__).resolve().parents[2] / "use_cases"


def test_both_use_cases_ship() -> None:
    assert {"delivery_eta", "machine_failure"} <= set(available_use_cases())
    eta = load_use_case("delivery_eta")
    assert eta.task == "regression"
    assert eta.label.tolerance == 5.0
    failure = load_use_case("machine_failure")
    assert failure.task == "binary_classification"
    kinds = {type(f).__name__ for f in eta.features.values()}
    assert kinds == {"EventFeature", "AggregateFeature", "BatchFeature"}
    functions = {
        f.function for uc in (eta, failure) for f in uc.features_of(AggregateFeature).values()
    }
    assert {"mean", "count", "std", "last", "max", "min"} <= functions


def test_feature_order_is_file_order() -> None:
    eta = load_use_case("delivery_eta")
    assert eta.feature_names[:2] == ["distance_km", "items"]
    assert eta.feature_names[-1] == "restaurant_prep_minutes"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("500ms", 500), ("30s", 30_000), ("5m", 300_000), ("2h", 7_200_000), ("1.5d", 129_600_000)],
)
def test_durations(text: str, expected: int) -> None:
    assert parse_duration_ms(text) == expected


def _broken(tmp_path: Path, edit: Any) -> Path:
    data = tomllib.loads((SHIPPED / "delivery_eta.toml").read_text())
    edit(data)
    path = tmp_path / "broken.toml"
    path.write_text(_to_toml(data))
    return path


def _to_toml(data: dict[str, Any], prefix: str = "") -> str:
    """Enough TOML writing for these specs (tables, strings, numbers, lists, inline tables)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + "}"
        return repr(v)

    lines, tables = [], []
    for key, v in data.items():
        if isinstance(v, dict) and (
            not v or any(isinstance(x, dict) for x in v.values()) or prefix == ""
        ):
            tables.append((key, v))
        else:
            lines.append(f"{key} = {value(v)}")
    out = "\n".join(lines) + "\n"
    for key, table in tables:
        name = f"{prefix}{key}"
        out += f"\n[{name}]\n" + _to_toml(table, f"{name}.")
    return out


def test_the_toml_writer_round_trips(tmp_path: Path) -> None:
    path = _broken(tmp_path, lambda data: None)
    assert load_use_case(str(path)) == load_use_case("delivery_eta")


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda d: d.update(task="ranking"), "task"),
        (lambda d: d.update(metrics=["auc"]), "do not apply to regression"),
        (lambda d: d["label"].pop("tolerance"), "needs label.tolerance"),
        (lambda d: d["label"].update(max_delay="soon"), "not a duration"),
        (lambda d: d["features"]["courier_speed_mean_10m"].update(entity="driver_id"), "driver_id"),
        (lambda d: d["features"]["courier_speed_mean_10m"].update(reading="rpm"), "rpm"),
        (lambda d: d["features"]["courier_speed_mean_10m"].update(function="median"), "function"),
        (
            lambda d: d["features"]["courier_speed_mean_10m"].update(
                window={"kind": "hopping", "size": "10m", "step": "3m"}
            ),
            "multiple of its step",
        ),
        (lambda d: d["features"]["items"].update(colour="red"), "colour"),
        (lambda d: d["entities"].update(split_key="order_id"), "split_key"),
        (lambda d: d["simulation"]["event"].pop("items"), "does not produce event features"),
    ],
)
def test_a_broken_spec_says_where_and_why(tmp_path: Path, edit: Any, words: str) -> None:
    with pytest.raises(UseCaseError) as err:
        load_use_case(str(_broken(tmp_path, edit)))
    assert "broken.toml" in str(err.value)
    assert words in str(err.value)


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("__import__('os').system('true')", "call functions by name"),
        ("__import__('os')", "unknown function"),
        ("base_speed.real", "not allowed"),
        ("uniform(1, 2)[0]", "not allowed"),
        ("open('/etc/passwd')", "unknown function"),
        ("clip(x=1)", "positionally"),
        ("base_sped * 2", "unknown names ['base_sped']"),
        ("1 < hour_of_day < 2", "chain comparisons"),
        ("1 +", "cannot parse"),
    ],
)
def test_a_bad_expression_is_refused_at_load(tmp_path: Path, expression: str, words: str) -> None:
    path = _broken(tmp_path, lambda d: d["simulation"]["reading"].update(speed_kmh=expression))
    with pytest.raises(ExpressionError, match=r"simulation\.reading\.speed_kmh") as err:
        load_use_case(str(path))
    assert words in str(err.value)


def test_an_unknown_use_case_lists_the_shipped_ones() -> None:
    with pytest.raises(UseCaseError, match="delivery_eta"):
        load_use_case("no_such_case")
