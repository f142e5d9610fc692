"""`stream-app spec new NAME`: a commented spec to start a use case from.

The template is a valid spec (a test loads it) with one feature of each kind, every key
explained, and no ``[simulation]``: a team's own use case starts from its own data.
"""

from __future__ import annotations

TEMPLATE = """\
# {name}: one use case of stream-app. Check it with `stream-app spec check {path}`.
# Every key is explained; delete the examples you do not need. Times are durations like
# "500ms", "30s", "5m", "2h" or "7d". Names are lower_snake_case.

name = "{name}"
description = "What is predicted, for whom, and when the prediction is asked for."
task = "{task}"        # "binary_classification" (a probability of class 1) or "regression"
# Metrics reported per model version (rolling, on the dashboard, and in evaluations).
# binary_classification: accuracy, log_loss, auc, calibration; regression: mae, rmse, mape,
# within_tolerance. Promotion decides on log_loss (binary) or mae (regression) by default.
metrics = {metrics}
# Topics and consumer groups of this use case carry this prefix ("{name}.client-events", ...),
# so several use cases share one Kafka without sharing a topic. "" uses the plain names.
# topic_prefix = "{name}."

[entities]
# The ids a client event carries in "entities": features are looked up by them. List every
# entity a feature below names.
keys = ["customer_id", "store_id"]
# The entity hashed to split traffic between champion and challenger (stable per entity).
split_key = "customer_id"

[label]
name = "{label}"       # what ground truth carries in "label"{label_note}
unit = ""
join = "event_id"      # ground truth names the event_id of the event it labels
max_delay = "1d"       # a label unmatched this long after it arrived is counted as expired
{label_extra}

[missing_features]
# A stored feature that is missing (unknown entity, nothing in the window) or older than
# max_age: "default" serves the feature's default and names it in the prediction's
# missing_features; "dead_letter" refuses the event (code missing_features).
policy = "default"
max_age = "1h"

[serving]
# Which time stored features are read for. "now" (live traffic): the windows as they stand
# when the event is scored. "event_time" (a stream replayed from the past, events scored long
# after they happened): point in time, as of each event's own time: the windows complete by
# then (up to one window step behind it) and the batch features loaded before it.
features_at = "now"

# The values sensor readings carry in "values", with their units. Only needed for aggregate
# features. A reading names its entities in "entities" (e.g. {{"store_id": "store-7"}}).
[readings]
temperature_c = "degrees Celsius, from the store's sensor"

# The features, in the model's column order (a model imported with `stream-app models import`
# must use exactly these names in this order). Each has a default, used when it is missing.

# An event feature: a numeric field of the client event's "fields" (booleans count 0/1).
[features.basket_value]
source = "event"
# field = "basket_value"   # the event field, if named differently from the feature
unit = "EUR"
default = 30.0

[features.hour_of_day]
source = "event"
unit = "hours (0-24, UTC)"
default = 12.0
monitor_drift = false      # off for features that change by design (the clock)

# An aggregate feature: a windowed aggregate of one reading value per entity, on event time,
# computed by the feature agent from the sensor-readings topic (and by `history import` from
# past readings, the same way). function: count, sum, mean, min, max, std or last.
# window: tumbling {{ kind = "tumbling", size = "15m" }} or hopping
# {{ kind = "hopping", size = "1h", step = "5m" }} (size a multiple of step).
[features.store_temperature_mean_1h]
source = "aggregate"
entity = "store_id"
reading = "temperature_c"
function = "mean"
window = {{ kind = "hopping", size = "1h", step = "5m" }}
allowed_lateness = "1m"    # readings this late are still merged; later ones are counted only
unit = "degrees Celsius"
default = 20.0

# A batch feature: one value per entity, loaded from a file with `stream-app features load`
# (a column named after the entity key, one column per feature; --as-of for its valid time).
[features.customer_orders_90d]
source = "batch"
entity = "customer_id"
unit = "orders"
default = 0.0
"""

LABELS = {
    "binary_classification": (
        "churned",
        "\n# binary: ground truth is 0 or 1 (or a probability-like 0..1 value)",
        "threshold = 0.5       # predicted probability from which class 1 counts as predicted",
        '["accuracy", "log_loss", "auc", "calibration"]',
    ),
    "regression": (
        "basket_minutes",
        "",
        "tolerance = 5.0       # |prediction - label| within this counts as correct",
        '["mae", "rmse", "mape", "within_tolerance"]',
    ),
}


def render_template(name: str, task: str, path: str) -> str:
    """The template for use case ``name`` (``task``: binary_classification or regression)."""
    label, note, extra, metrics = LABELS[task]
    return TEMPLATE.format(
        name=name, task=task, path=path, label=label, label_note=note, label_extra=extra,
        metrics=metrics,
    )  # fmt: skip
