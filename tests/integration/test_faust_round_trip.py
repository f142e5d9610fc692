"""One message trip through a Faust agent of an app built by the project's factory."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, Producer

from stream_app.runtime.app import create_app
from stream_app.settings import Settings, WorkerSettings
from tests.conftest import free_port


def test_faust_agent_round_trip(
    live_settings: Settings, scratch_topics: Callable[..., str], tag: str, tmp_path: Any
) -> None:
    source_name, sink_name = scratch_topics("agent-in"), scratch_topics("agent-out")
    settings = live_settings.model_copy(
        update={"worker": WorkerSettings(web_port=free_port(), app_id=f"test-{tag}")}
    )
    config = settings.kafka.client_config()

    async def scenario() -> tuple[dict[bytes, bytes], str]:
        app = create_app(settings)
        app.conf.datadir = tmp_path
        source = app.topic(source_name, key_serializer="raw", value_serializer="raw")
        sink = app.topic(sink_name, key_serializer="raw", value_serializer="raw")

        @app.agent(source)
        async def shout(stream: Any) -> None:
            async for key, value in stream.items():
                await sink.send(key=key, value=value.upper())

        await app.start()
        try:
            producer = Producer(config)
            for i in range(20):
                producer.produce(source_name, key=f"k{i}".encode(), value=f"hello {i}".encode())
            producer.flush(30)
            consumer = Consumer(
                {**config, "group.id": f"check-{tag}", "auto.offset.reset": "earliest"}
            )
            consumer.subscribe([sink_name])
            received: dict[bytes, bytes] = {}
            deadline = time.monotonic() + 60
            loop = asyncio.get_running_loop()
            try:
                while len(received) < 20 and time.monotonic() < deadline:
                    messages = await loop.run_in_executor(None, consumer.consume, 100, 0.5)
                    received.update((m.key(), m.value()) for m in messages if m.error() is None)
            finally:
                consumer.close()
            url = f"http://127.0.0.1:{settings.worker.web_port}/metrics"
            metrics = await loop.run_in_executor(None, _get, url)
            return received, metrics
        finally:
            await app.stop()

    received, metrics = asyncio.run(scenario())
    assert received == {f"k{i}".encode(): f"HELLO {i}".encode() for i in range(20)}
    assert "# TYPE python_gc_objects_collected_total counter" in metrics


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        body: bytes = response.read()
        return body.decode()
