"""The replay report as an HTML page: tables, winner, four inline SVG charts, escaping, and
the page as headless chromium builds it."""

from __future__ import annotations

import math
import random
import re
from pathlib import Path
from typing import Any

import pytest

from stream_app.replay.html import render_html
from tests.browser import dump_dom

FROM = 1_796_000_000_000
BUCKET_MS = 60_000
V1, V2 = "delivery_eta-20261127-101010", "delivery_eta-20261120-090000"
CHARTS = ("error-over-time", "error-distribution", "versus", "drift")


def realistic_report() -> dict[str, Any]:
    """Two versions, 30 one-minute buckets with gaps, a histogram, 500 points, 3 features."""
    rng = random.Random(7)
    buckets = [FROM + i * BUCKET_MS for i in range(30)]
    mae_v1 = [None if i in (3, 17) else 1.8 + rng.random() * 0.3 for i in range(30)]
    mae_v2 = [None if i in (3, 4, 5) else 2.3 + rng.random() * 0.3 for i in range(30)]
    edges = [-6.0 + 0.5 * i for i in range(25)]
    counts_v1 = [0, 0, 1, 3, 8, 20, 45, 80, 120, 160, 180, 150, 110, 70, 40, 20, 9, 4, 2, 1]
    counts_v2 = [1, 2, 4, 9, 15, 30, 55, 90, 110, 130, 140, 130, 100, 80, 60, 40, 25, 12, 6, 3]
    counts = {V1: [*counts_v1, 0, 0, 0, 0], V2: [*counts_v2, 0, 0, 0, 1]}
    points = [[x, x + rng.gauss(0, 0.4)] for x in (rng.uniform(5, 45) for _ in range(500))]
    drift = {
        "distance_km": [None if i < 2 else 0.01 * i for i in range(30)],
        "hour_of_day": [0.02] * 30,
        "prediction": [None if i % 10 == 0 else 0.3 + 0.001 * i for i in range(30)],
    }
    return {
        "run_id": "20261127-190312-ab12cd",
        "use_case": "delivery_eta",
        "task": "regression",
        "topic": "client-events",
        "from": FROM,
        "to": FROM + 30 * BUCKET_MS,
        "created_at": FROM + 31 * BUCKET_MS,
        "interrupted": False,
        "primary_metric": "mae",
        "higher_is_better": ["auc", "accuracy", "within_tolerance"],
        "plan": {
            "topic": "client-events",
            "from": FROM,
            "to": FROM + 30 * BUCKET_MS,
            "messages": 1234,
            "partitions": [
                {"partition": 0, "start": 10, "end": 600, "messages": 590},
                {"partition": 1, "start": 7, "end": 651, "messages": 644},
            ],
        },
        "events": {
            "messages": 1234,
            "scored": 1200,
            "labelled": 1100,
            "invalid": {"INVALID_JSON": 30, "MISSING_FIELD": 4},
        },
        "features": {"served": 1150, "point_in_time": 50},
        "versions": [
            {
                "version": V1,
                "metrics": {"mae": 1.8734, "rmse": 2.5012, "within_tolerance": 0.81},
                "labelled": 1100,
                "production": {"compared": 1150, "identical": 1150, "max_abs_difference": 0.0},
            },
            {
                "version": V2,
                "metrics": {"mae": 2.4417, "rmse": 3.1066, "within_tolerance": 0.74},
                "labelled": 1100,
                "production": None,
            },
        ],
        "winner": {
            "version": V1,
            "metric": "mae",
            "values": {V1: 1.8734, V2: 2.4417},
            "improvement": 0.2327,
            "p_value": 0.001,
            "reasons": [
                "mae 2.442 -> 1.873: improves by 23.3% (>= 2.0%)",
                "paired bootstrap p = 0.001 < 0.05",
            ],
        },
        "series": {
            "error_over_time": {
                "metric": "mae",
                "bucket_ms": BUCKET_MS,
                "buckets": buckets,
                "labelled": [36] * 30,
                "by_version": {V1: mae_v1, V2: mae_v2},
            },
            "error_distribution": {
                "quantity": "prediction - label",
                "edges": edges,
                "by_version": counts,
            },
            "versus": {"x": "production", "y": V1, "metric": "prediction", "points": points},
            "drift": {
                "metric": "psi",
                "threshold": 0.25,
                "bucket_ms": BUCKET_MS,
                "buckets": buckets,
                "features": drift,
            },
        },
        "timing": {
            "seconds": 3.2,
            "events_per_s": 385.6,
            "phases": {"plan": 0.1, "read_and_score": 2.0, "labels": 0.8, "report": 0.3},
        },
    }


def empty_report() -> dict[str, Any]:
    """One version, no labels, every series empty or null, no winner."""
    report = realistic_report()
    report["events"] = {"messages": 0, "scored": 0, "labelled": 0, "invalid": {}}
    report["versions"] = [
        {"version": V1, "metrics": {"mae": None, "rmse": None}, "labelled": 0, "production": None}
    ]
    report["winner"] = None
    report["series"] = {
        "error_over_time": {
            "metric": "mae",
            "bucket_ms": BUCKET_MS,
            "buckets": [FROM, FROM + 1],
            "labelled": [0, 0],
            "by_version": {V1: [None, None]},
        },
        "error_distribution": {"quantity": "prediction - label", "edges": [], "by_version": {}},
        "versus": {"x": "production", "y": V1, "metric": "prediction", "points": []},
        "drift": {
            "metric": "psi",
            "threshold": None,
            "bucket_ms": BUCKET_MS,
            "buckets": [],
            "features": {},
        },
    }
    return report


def chart_points(page: str, chart_id: str) -> int:
    """The ``data-points`` of the element with the chart's id."""
    found = re.search(rf'<[^>]*\bid="{chart_id}"[^>]*\bdata-points="(\d+)"', page)
    assert found, f"no element with id={chart_id} and data-points"
    return int(found.group(1))


def element(page: str, element_id: str) -> str:
    """The text from the element with this id to the end of its section (or details)."""
    start = page.index(f'id="{element_id}"')
    ends = [i for tag in ("</section>", "</details>") if (i := page.find(tag, start)) >= 0]
    return page[start : min(ends)]


def expected_points(report: dict[str, Any]) -> dict[str, int]:
    """What each chart should draw: values that are not null, bars that are not empty."""
    series = report["series"]
    return {
        "error-over-time": sum(
            v is not None for vs in series["error_over_time"]["by_version"].values() for v in vs
        ),
        "error-distribution": sum(
            c > 0 for cs in series["error_distribution"]["by_version"].values() for c in cs
        ),
        "versus": len(series["versus"]["points"]),
        "drift": sum(v is not None for vs in series["drift"]["features"].values() for v in vs),
    }


def test_each_chart_counts_the_points_it_draws() -> None:
    report = realistic_report()
    page = render_html(report)
    expected = expected_points(report)
    assert expected == {"error-over-time": 55, "error-distribution": 39, "versus": 500, "drift": 85}
    assert {chart: chart_points(page, chart) for chart in CHARTS} == expected
    assert page.count("<svg") == 4
    assert "no data" not in page


def test_the_counts_follow_the_input() -> None:
    report = realistic_report()
    series = report["series"]
    del series["versus"]["points"][:10]
    series["error_over_time"]["by_version"][V2][:10] = [None] * 10
    series["drift"]["features"]["hour_of_day"] = [None] * 30
    page = render_html(report)
    assert chart_points(page, "versus") == 490
    assert chart_points(page, "error-over-time") == 55 - 7
    assert chart_points(page, "drift") == 85 - 30


def test_lines_lift_the_pen_at_gaps_and_drift_shows_its_threshold() -> None:
    page = render_html(realistic_report())
    over_time = element(page, "error-over-time")
    paths = re.findall(r'<path d="([^"]*)"', over_time)
    assert len(paths) == 2  # a line per version
    assert [p.count("M") for p in paths] == [3, 2]  # V1: gaps at 3 and 17; V2: one at 3..5
    assert V1 in over_time
    assert V2 in over_time
    drift = element(page, "drift")
    assert 'stroke-dasharray="6 4"' in drift
    assert "threshold 0.25" in drift
    assert "prediction (max 0.329, above threshold)" in drift
    assert "distance_km (max 0.29, above threshold)" in drift
    assert "hour_of_day (max 0.02)" in drift
    versus = element(page, "versus")
    assert versus.count("<circle") == 500
    assert ">production</text>" in versus
    assert f">{V1}</text>" in versus


def test_tables_show_the_run_metrics_production_and_winner() -> None:
    page = render_html(realistic_report())
    assert "client-events" in page
    assert "2026-11-30T00:53:20Z → 2026-11-30T01:23:20Z UTC" in page
    assert "20261127-190312-ab12cd" in page
    assert 'id="interrupted"' not in page
    summary = element(page, "summary")
    for text in ("1,234", "1,200 (97.2%)", "INVALID_JSON", "MISSING_FIELD", "1,150", "50 (4.1%)"):
        assert text in summary, text
    metrics = element(page, "metrics")
    primary = re.search(r'<tr class="primary">(.*?)</tr>', metrics)
    assert primary
    assert "mae (primary)" in primary.group(1)
    assert '<td class="n best">1.873</td><td class="n">2.442</td>' in primary.group(1)
    for value in ("2.501", "3.107", "0.81", "0.74"):
        assert f">{value}</td>" in metrics, value
    assert '<td class="n best">0.81</td>' in metrics  # higher is better for this one
    assert 'production: identical</th><td class="n">1,150</td><td class="n">—</td>' in metrics
    winner = element(page, "winner")
    assert f"Winner: {V1}" in winner
    assert "improvement 23.3%" in winner
    assert "p-value 0.001" in winner
    assert "paired bootstrap p = 0.001 &lt; 0.05" in winner
    plan = element(page, "plan")
    assert plan.startswith('id="plan"><summary>Plan: 1,234 messages in 2 partitions')
    assert '<td class="n">644</td>' in plan


def test_estimates_without_labels_are_shown_beside_the_metrics() -> None:
    report = realistic_report()
    assert "estimated without labels" not in element(render_html(report), "metrics")
    report["versions"][0]["estimated"] = {
        "method": "dle", "calibrated": None, "metrics": {"mae": 1.9021, "rmse": 2.47},
        "error": {"mae": 0.0287, "rmse": 0.0312},
    }  # fmt: skip
    metrics = element(render_html(report), "metrics")
    assert (
        'mae estimated without labels (dle)</th><td class="n">1.902</td><td class="n">—</td>'
    ) in metrics


def test_differing_production_predictions_and_an_interruption_are_flagged() -> None:
    report = realistic_report()
    report["interrupted"] = True
    report["versions"][0]["production"]["identical"] = 1149
    page = render_html(report)
    assert 'id="interrupted"' in page
    assert "Interrupted" in page
    assert '<span class="alarm">1,149</span>' in element(page, "metrics")


def test_a_tie_has_no_winner() -> None:
    report = realistic_report()
    report["winner"].update(version=None, values={V1: 1.9, V2: 1.9}, improvement=0.0)
    winner = element(render_html(report), "winner")
    assert "No winner: a tie" in winner
    assert "improvement 0.0%" in winner


def test_every_text_from_the_report_is_escaped() -> None:
    report = realistic_report()
    hostile = "<script>alert(1)</script>"
    report["topic"] = hostile
    report["use_case"] = '"><img src=x onerror=alert(1)>'
    report["series"]["drift"]["features"]["<b>&x"] = [0.1] * 30
    report["events"]["invalid"]["<i>CODE</i>"] = 1
    report["series"]["versus"]["y"] = "</text><script>"
    page = render_html(report)
    assert "<script" not in page
    assert "<img" not in page
    assert "<b>&x" not in page
    assert "<i>CODE" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;&amp;x" in page


def test_an_empty_report_draws_empty_charts() -> None:
    page = render_html(empty_report())
    assert {chart: chart_points(page, chart) for chart in CHARTS} == dict.fromkeys(CHARTS, 0)
    assert page.count("no data") == 4
    assert 'id="winner"' not in page
    assert "mae (primary)" in element(page, "metrics")
    bare = render_html({})
    assert {chart: chart_points(bare, chart) for chart in CHARTS} == dict.fromkeys(CHARTS, 0)


def test_nulls_and_oddities_in_series_do_not_break_the_charts() -> None:
    report = realistic_report()
    series = report["series"]
    series["error_distribution"]["by_version"] = {V1: [0] * 24}  # nothing counted
    series["versus"]["points"] = [[None, 1.0], [2.0], [3.0, 3.0]]  # one usable point
    series["drift"]["features"] = {"only": [None] * 29 + [0.1]}  # one point, no line
    series["error_over_time"]["buckets"] = [FROM]
    series["error_over_time"]["by_version"] = {V1: [math.inf], V2: [1.0]}
    page = render_html(report)
    assert chart_points(page, "error-distribution") == 0
    assert chart_points(page, "versus") == 1
    assert chart_points(page, "drift") == 1
    assert chart_points(page, "error-over-time") == 1
    assert '<circle cx="64.0"' in element(page, "error-over-time")  # a lone point gets a dot


def test_chromium_renders_the_four_charts(tmp_path: Path) -> None:
    path = tmp_path / "replay.html"
    path.write_text(render_html(realistic_report()), encoding="utf-8")
    dom = dump_dom(path.as_uri())
    for chart in CHARTS:
        assert chart_points(dom, chart) > 0, chart
        assert "<svg" in element(dom, chart), chart
    assert element(dom, "versus").count("<circle") == 500  # parsed as SVG elements
    assert "<details" in dom
    assert f"Winner: {V1}" in dom


@pytest.mark.parametrize("chart", CHARTS)
def test_chart_ids_are_unique(chart: str) -> None:
    assert render_html(realistic_report()).count(f'id="{chart}"') == 1
