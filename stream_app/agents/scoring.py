"""The scoring agent: client-events in micro-batches -> the scoring service.

Thin on purpose: it turns Faust events into ``InputMessage``s and hands batches to the
service. Up to ``scoring.batches_in_flight`` batches are processed at once, so consuming the
next batch overlaps the I/O of the previous ones; events are acknowledged by hand, batch by
batch in arrival order, and only after the service returned for that batch, i.e. after Kafka
and Cassandra acknowledged every one of its outputs. Offsets never move past unfinished work.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import faust

from stream_app.messages import NO_HEADERS, Headers, InputMessage
from stream_app.scoring.service import ScoringService
from stream_app.settings import Settings
from stream_app.supervision import crash_without_commit

log = logging.getLogger(__name__)


def faust_headers(headers: Any) -> Headers:
    """A Faust message's headers (a list of pairs, or a mapping) as ``Headers``."""
    if not headers:
        return NO_HEADERS
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return tuple((str(name), value) for name, value in pairs)


def to_inputs(events: list[Any]) -> list[InputMessage]:
    """Faust events as plain input messages (raw key and value bytes, headers)."""
    return [
        InputMessage(
            e.message.topic,
            e.message.partition,
            e.message.offset,
            e.message.key,
            e.message.value,
            int(e.message.timestamp * 1000),
            faust_headers(e.message.headers),
        )
        for e in events
    ]


def register(
    app: faust.App, settings: Settings, service: ScoringService, name: str = "scoring"
) -> Any:
    """Add the scoring agent to ``app``."""
    source = app.topic(
        settings.kafka.topics.client_events, key_serializer="raw", value_serializer="raw"
    )
    scoring_settings = settings.scoring

    @app.agent(source, name=name)
    async def scoring(stream: Any) -> None:
        # Batches in flight, oldest first; the queue bound is the backpressure.
        in_flight: asyncio.Queue[tuple[list[Any], asyncio.Task[Any]]] = asyncio.Queue(
            maxsize=scoring_settings.batches_in_flight
        )

        async def acknowledge_in_order() -> None:
            while True:
                events, task = await in_flight.get()
                try:
                    await task
                except Exception:
                    crash_without_commit("scoring a batch failed unexpectedly")
                for event in events:
                    await stream.ack(event)

        acknowledger = asyncio.ensure_future(acknowledge_in_order())
        try:
            async for events in stream.noack_take(
                scoring_settings.batch_size, within=settings.consumer.batch_wait_s
            ):
                task = asyncio.ensure_future(service.process(to_inputs(events)))
                await in_flight.put((events, task))
        finally:
            acknowledger.cancel()

    return scoring
