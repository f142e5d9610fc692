"""Where a client event's time goes on the scoring path, stage by stage.

In pipeline order:

- ``kafka_wait``: from the event's Kafka timestamp to the start of the batch that scores it
  (time in the topic, the fetch and the wait for a batch slot); one value per event;
- ``decode``: decoding and validating the batch;
- ``features``: reading the batch's stored features (Cassandra, through the cache);
- ``score``: building the vectors and the model's predict calls;
- ``publish``: producing the batch's outputs until Kafka acknowledged every one;
- ``store``: writing the batch's predictions until Cassandra acknowledged them (concurrently
  with ``publish``);
- ``commit``: from the batch being done to Kafka acknowledging its offsets (after the event's
  prediction is out: it bounds what a crash scores twice, not the latency).

All but ``kafka_wait`` are per batch: every event of a batch spends them. They are exposed as
the ``stream_app_scoring_stage_seconds`` histogram (label ``stage``), and as percentiles of each
stage's most recent values on ``/dashboard`` and in ``stream-app status``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

STAGES = ("kafka_wait", "decode", "features", "score", "publish", "store", "commit")


def percentiles(values_ms: Iterable[float]) -> dict[str, float]:
    """p50, p95 and p99 of ``values_ms`` and how many there were (empty: ``{}``)."""
    values = np.fromiter(values_ms, dtype=float)
    if values.size == 0:
        return {}
    p50, p95, p99 = np.percentile(values, (50, 95, 99))
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "n": int(values.size)}
