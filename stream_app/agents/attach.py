"""Run a component with the Faust app: started after the app starts, stopped before it stops."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any


def attach(
    app: Any, name: str, start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]]
) -> None:
    """Start ``start()`` with ``app`` and ``stop()`` when it stops (a mode service of its own)."""
    import mode

    async def on_start(self: Any) -> None:
        await start()

    async def on_stop(self: Any) -> None:
        await stop()

    # A service class of its own per component: mode registers services by qualified name.
    qualified = "".join(c if c.isalnum() else "_" for c in name)
    service = type(
        qualified,
        (mode.Service,),
        {"on_start": on_start, "on_stop": on_stop, "__qualname__": qualified,
         "__module__": __name__},
    )  # fmt: skip
    app.service(service)
