"""Cassandra helpers shared by every store: an asyncio bridge and concurrent writes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

from cassandra.cluster import Session
from cassandra.concurrent import execute_concurrent_with_args

from stream_app.errors import StoreError

WRITE_CONCURRENCY = 128


def execute_async(
    session: Session,
    statement: Any,
    parameters: Sequence[Any] | None = None,
    timeout_s: float | None = None,
    profile: str | None = None,
) -> asyncio.Future[Any]:
    """Run a statement through the driver's own event loop and await it from asyncio.

    The driver completes its ``ResponseFuture`` on its I/O thread; the callbacks hand the
    result to the asyncio loop thread-safely, so no thread is blocked per request.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    options: dict[str, Any] = {}
    if timeout_s is not None:
        options["timeout"] = timeout_s
    if profile is not None:
        options["execution_profile"] = profile
    response = session.execute_async(statement, parameters, **options)

    def on_result(rows: Any) -> None:
        loop.call_soon_threadsafe(_resolve, future, rows, response)

    def on_error(exc: BaseException) -> None:
        loop.call_soon_threadsafe(_fail, future, exc)

    response.add_callbacks(on_result, on_error)
    return future


def _resolve(future: asyncio.Future[Any], rows: Any, response: Any) -> None:
    if future.done():
        return
    if response.has_more_pages:
        # Our lookups are single partitions far below a page; more pages means a misuse.
        future.set_exception(StoreError("a paged result reached execute_async"))
        return
    future.set_result(rows)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def is_outage(exc: BaseException) -> bool:
    """Whether a driver error means Cassandra is unreachable (pause and retry) rather than
    one slow request (count it and move on)."""
    from cassandra import OperationTimedOut, ReadTimeout, Unavailable, WriteTimeout
    from cassandra.cluster import NoHostAvailable
    from cassandra.connection import ConnectionException

    if isinstance(exc, NoHostAvailable | ConnectionException | Unavailable):
        return True
    if isinstance(exc, OperationTimedOut | ReadTimeout | WriteTimeout):
        return False
    return isinstance(exc, OSError)


def worth_retrying(exc: BaseException) -> bool:
    """Whether a failed write should be tried again (after a back-off): Cassandra is
    unreachable, or it (``WriteTimeout``, ``ReadTimeout``) or the driver
    (``OperationTimedOut``: no reply within the client's timeout, a slow or overloaded node)
    gave up waiting, or a store of this project reported a failure."""
    from cassandra import OperationTimedOut, ReadTimeout, WriteTimeout

    from stream_app.errors import StoreError

    return is_outage(exc) or isinstance(
        exc, OperationTimedOut | ReadTimeout | WriteTimeout | StoreError
    )


def write_all(session: Session, statement: Any, rows: Iterable[Sequence[Any]]) -> int:
    """Execute a prepared write for every row, many in flight; raise on the first failure."""
    results = execute_concurrent_with_args(
        session, statement, list(rows), concurrency=WRITE_CONCURRENCY, raise_on_first_error=True
    )
    return len(results)
