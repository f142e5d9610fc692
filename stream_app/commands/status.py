"""`stream-app status`: a terminal summary of a running worker and its models.

Reads the worker's `/dashboard/data` (throughput, latency, rolling accuracy, drift alarms,
lag, dead letters). Without a worker, it says so and shows what Kafka and Cassandra know:
the consumer groups' lag and the model roles.
"""

from __future__ import annotations

import argparse
import json
import urllib.parse
import urllib.request
from typing import Any

from stream_app.settings import Settings
from stream_app.timeparse import format_ms
from stream_app.use_cases.spec import UseCase


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("status", help="lag, throughput, models, accuracy, drift alarms")
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON")
    parser.add_argument("--url", help="the worker's web address (default: from the settings)")
    parser.add_argument(
        "--use-case", help="use case name or .toml path (default: settings; a worker serving "
        "several shows this one)",
    )  # fmt: skip
    parser.set_defaults(run=run)


def fetch(url: str, use_case: str | None = None) -> dict[str, Any] | None:
    query = f"?use_case={urllib.parse.quote(use_case)}" if use_case else ""
    try:
        with urllib.request.urlopen(f"{url}/dashboard/data{query}", timeout=3) as response:
            data: dict[str, Any] = json.loads(response.read())
            return data
    except OSError:
        return None


def _figure(value: Any, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def render(data: dict[str, Any]) -> str:
    """The snapshot as a few lines of text."""
    lines = [f"use case {data['use_case']} ({data['task']})"]
    traffic = data.get("traffic", {})

    def held(role: str, version: str) -> str:
        share = f" ({traffic[role]:.0%} of traffic)" if role in traffic else ""
        return f"{role} {version}{share}"

    roles = ", ".join(held(role, version) for role, version in sorted(data["roles"].items()))
    lines.append(f"models: {roles or 'none'}")
    for switch in data.get("switches", [])[-3:]:
        lines.append(
            f"  swapped {format_ms(switch['at'])}: {', '.join(switch['changed']) or 'roles'} in "
            f"{switch['switch_s'] * 1000:.0f} ms (loading {switch['load_s'] * 1000:.0f} ms)"
        )
    for decision in data.get("decisions", [])[-3:]:
        lines.append(
            f"  orchestrator {format_ms(decision['decided_at'])}: {decision['action']} "
            f"{decision['model_version'] or ''}: {'; '.join(decision['reasons'])[:160]}"
        )
    rates = ", ".join(f"{t} {r:,.0f}/s" for t, r in sorted(data["throughput"].items()))
    lines.append(f"throughput (last 10 s): {rates or 'idle'}")
    latency = data["latency_ms"]
    if latency:
        lines.append("latency ms: " + ", ".join(f"{q} {v:.0f}" for q, v in latency.items()))
    if stages := data.get("stages_ms"):
        lines.append(
            "stages ms (p50/p99): "
            + ", ".join(f"{s} {_ms(f['p50'])}/{_ms(f['p99'])}" for s, f in stages.items())
        )
    lags = ", ".join(f"{x['topic']} {x['messages']:,}" for x in data["consumer_lag"])
    lines.append(f"consumer lag: {lags or '-'}")
    lines.append(f"rolling accuracy ({data['accuracy_window_s']:.0f} s):")
    regression = data["task"] == "regression"
    metric_names = (
        ("mae", "rmse", "mape", "within_tolerance")
        if regression
        else ("accuracy", "log_loss", "auc", "calibration")
    )
    for row in data["accuracy"]:
        figures = "  ".join(f"{m} {_figure(row.get(m))}" for m in (*metric_names, "skill"))
        lines.append(
            f"  {row['role']:<10} {row['model_version']:<40} {figures}  labels {row['labels']:,.0f}"
            f"/{row['predictions']:,.0f} coverage {_figure(row.get('label_coverage'), 3)}"
        )
    lines += _estimates(data.get("estimates", []))
    alarms = data["drift_alarms"]
    if alarms:
        for a in alarms:
            lines.append(
                f"DRIFT {a['feature']} ({a['model_version']}): PSI {a['psi']:.3f}, KS {a['ks']:.3f}"
            )
    else:
        lines.append(f"drift: no alarm (PSI > {data['thresholds']['psi']} or KS > "
                     f"{data['thresholds']['ks']})")  # fmt: skip
    dead = data["dead_letters"]
    codes: dict[str, int] = {}
    for record in dead:
        codes[record["error_code"]] = codes.get(record["error_code"], 0) + 1
    rate = data["throughput"].get("dead-letter")
    lines.append(
        f"dead letters: {len(dead)} recent"
        + (f" ({codes})" if codes else "")
        + (f", {rate:,.1f}/s" if rate else "")
    )
    lines.append(
        f"labels: matched {data['labels']['matched']:,}, expired {data['labels']['unmatched']:,}"
    )
    return "\n".join(lines)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.use_cases.deployment import load

    use_case, settings = load(args.use_case, settings)
    url = args.url or f"http://{settings.worker.web_host}:{settings.worker.web_port}"
    data = fetch(url, use_case.name if args.use_case else None)
    if data is not None:
        print(json.dumps(data, indent=2) if args.json else render(data))
        return 0
    print(f"no worker answers at {url}; what Kafka and Cassandra know:")
    print(offline(settings, use_case))
    return 1


def offline(settings: Settings, use_case: UseCase) -> str:
    """Consumer-group lag (Kafka) and model roles (registry), without a worker."""
    from confluent_kafka import Consumer, TopicPartition

    from stream_app.cassandra_session import connected
    from stream_app.models.registry import ModelRegistry
    from stream_app.use_cases.deployment import group_id

    lines = []
    topics = settings.kafka.topics
    for agent, topic in (("scoring", topics.client_events), ("features", topics.sensor_readings),
                         ("accuracy", topics.ground_truth)):  # fmt: skip
        group = group_id(settings, use_case, agent)
        consumer = Consumer(settings.kafka.client_config({"group.id": group}))
        try:
            metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
            partitions = [
                TopicPartition(topic, p) for p in (metadata.partitions if metadata else [])
            ]
            lag = 0
            for tp in consumer.committed(partitions, timeout=10):
                low, high = consumer.get_watermark_offsets(tp, timeout=10)
                lag += high - (tp.offset if tp.offset >= 0 else low)
            lines.append(f"  {agent:<9} lag {lag:,} on {topic}")
        finally:
            consumer.close()
    with connected(settings.cassandra) as session:
        roles = ModelRegistry(session, settings.cassandra.keyspace, use_case.name).roles()
    for role, assignment in sorted(roles.items()):
        lines.append(f"  {role:<9} {assignment.version}")
    return "\n".join(lines)


def _estimates(estimates: list[dict[str, Any]]) -> list[str]:
    """Estimated beside realised per version, and how far the estimates were off."""
    if not estimates:
        return []
    lines = ["estimated without labels (realised; error of the estimate over N settled windows):"]
    for row in estimates:
        figures = "  ".join(
            f"{m} {_figure(v)} ({_figure(row['realised'].get(m))}; "
            f"{_figure(row['estimate_error'].get(m), 3)})"
            for m, v in row["estimated"].items()
        )
        note = "" if row.get("calibrated") is not False else "  [uncalibrated: CBPE is biased]"
        lines.append(
            f"  {row['role']:<10} {row['model_version']:<40} {row['method']}: {figures}  "
            f"N {row['windows_compared']}{note}"
        )
    return lines


def _ms(value: float) -> str:
    """Milliseconds, with a decimal below 10 (the short stages are fractions of one)."""
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"
