"""The container image (`make image`) against the local services, as a team would run it:
`init` and `bootstrap` as one-off containers, the worker as a long-running one on the host's
network, one event produced with kcat and its prediction read back, /ready and the image's
HEALTHCHECK, a non-root user, and SIGTERM (`podman stop`) draining to exit code 0.

Run by `make image-test` (which builds the image first); not part of `make test`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest

from stream_app.simulation.payloads import client_event_records
from stream_app.simulation.world import World
from stream_app.use_cases.spec import load_use_case
from tests.conftest import Deployment, consume_all
from tests.e2e.conftest import wait_assigned

pytestmark = pytest.mark.image

ROOT = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("IMAGE", "localhost/stream-app:0.1.0")
ENGINE = os.environ.get("ENGINE") or shutil.which("podman") or shutil.which("docker") or "podman"
PODMAN = "podman" in Path(ENGINE).name


def engine(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    flags = ["--runtime", "runc"] if PODMAN and shutil.which("runc") else []
    env = dict(os.environ)
    if PODMAN:
        env.setdefault("CONTAINERS_CONF", str(ROOT / "deploy/podman/containers.conf"))
    return subprocess.run([ENGINE, *flags, *args], capture_output=True, text=True,
                          timeout=timeout, env=env, check=False)  # fmt: skip


def env_flags(deployment: Deployment) -> list[str]:
    env = {k: v for k, v in deployment.env.items() if k != "STREAM_APP_SERVICES__HOME"}
    return [flag for key, value in env.items() for flag in ("-e", f"{key}={value}")]


@pytest.fixture
def container_name() -> Iterator[str]:
    name = f"stream-app-test-{uuid.uuid4().hex[:8]}"
    yield name
    engine("rm", "-f", name, timeout=120)


def test_the_image_initialises_bootstraps_serves_and_drains(
    deployment: Deployment, container_name: str
) -> None:
    assert engine("image", "inspect", IMAGE).returncode == 0, f"no image {IMAGE}: make image"
    run = ["run", "--rm", "--network", "host", *env_flags(deployment), IMAGE]
    init = engine(*run, "init")
    assert init.returncode == 0, init.stderr[-2000:]
    boot = engine(*run, "bootstrap", "--days", "0.2", "--events-per-day", "3000")
    assert boot.returncode == 0, boot.stderr[-2000:]

    started = engine("run", "-d", "--name", container_name, "--network", "host",
                     *env_flags(deployment), IMAGE, "worker")  # fmt: skip
    assert started.returncode == 0, started.stderr
    settings = deployment.settings
    topics = settings.kafka.topics
    try:
        body = wait_assigned(settings.worker.web_port, {topics.client_events}, timeout_s=180)
    except AssertionError:
        raise AssertionError(engine("logs", container_name).stderr[-3000:]) from None
    assert body["dependencies"] == {"kafka": "ok", "cassandra": "ok"}
    assert body["champions"]["delivery_eta"]
    assert engine("exec", container_name, "id", "-u").stdout.strip() == "10001"

    # one event, as a producer would send it, with kcat
    world = World(load_use_case("delivery_eta"), 11)
    event_id = f"kcat-{uuid.uuid4().hex[:8]}"
    events = world.client_events(np.array([int(time.time() * 1000)]))
    ((key, value),) = client_event_records(world, events, [event_id])
    produced = subprocess.run(
        ["kcat", "-b", settings.kafka.bootstrap_servers, "-P", "-t", topics.client_events,
         "-K", "\t"], input=key + b"\t" + value + b"\n", capture_output=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert produced.returncode == 0, produced.stderr
    predictions = [orjson.loads(m.value()) for m in consume_all(settings, topics.predictions, 1)]
    assert [p["event_id"] for p in predictions] == [event_id]

    if PODMAN:  # the image's HEALTHCHECK, run as the engine runs it
        health = engine("healthcheck", "run", container_name)
        assert health.returncode == 0, health.stdout + health.stderr

    stopped = engine("stop", "--time", "90", container_name, timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    state = engine("inspect", container_name, "--format", "{{.State.ExitCode}}")
    logs = engine("logs", container_name)
    assert state.stdout.strip() == "0", logs.stderr[-3000:]
    assert "draining" in logs.stdout + logs.stderr
