"""The orchestrator's timer: on the leader worker only (Faust's leader partition decides)."""

from __future__ import annotations

import faust

from stream_app.agents.attach import attach
from stream_app.lifecycle.orchestrator import Orchestrator


def register(
    app: faust.App, orchestrator: Orchestrator, interval_s: float, name: str = "Orchestrator"
) -> None:
    """Check the champion every ``interval_s`` on the leader; elsewhere stay idle.

    Not ``on_leader=True``: a worker that loses the leadership must also stop following
    accuracy-events and stop a retraining it started, so every worker's timer runs and the
    non-leaders stand down.
    """

    @app.timer(interval_s)  # type: ignore[untyped-decorator]
    async def orchestrate() -> None:
        if app.is_leader():
            await orchestrator.check()
        else:
            await orchestrator.stand_down()

    async def nothing() -> None:
        return None

    attach(app, name, nothing, orchestrator.stand_down)
