"""Cassandra helpers shared by every store: an asyncio bridge and concurrent writes."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from cassandra.cluster import Session
from cassandra.concurrent import execute_concurrent_with_args
from cassandra.query import BoundStatement, PreparedStatement

from stream_app.errors import StoreError

WRITE_CONCURRENCY = 128
Serialize = Callable[[Any], bytes]


def _serializer(cql_type: Any, protocol_version: int) -> Serialize:
    """One column's serializer: the common types of the exact Python type a store passes
    (``str``, ``float``, ``int`` milliseconds) packed directly, anything else by the driver."""
    slow: Serialize = lambda value: cql_type.serialize(value, protocol_version)  # noqa: E731
    pack = {
        "text": (str, str.encode),
        "varchar": (str, str.encode),
        "double": (float, struct.Struct(">d").pack),
        "timestamp": (int, struct.Struct(">q").pack),
        "bigint": (int, struct.Struct(">q").pack),
    }.get(cql_type.typename)
    if pack is None:
        return slow
    kind, fast = pack
    return lambda value: fast(value) if type(value) is kind else slow(value)


def binder(prepared: PreparedStatement) -> Callable[[Sequence[Any]], BoundStatement]:
    """``prepared.bind`` for a hot path: the same bound values, about a sixth of the CPU
    (measured: 11 rows of a prediction insert bound into a batch in 22 us instead of 135).
    The driver's ``bind`` checks and routes each value through generic machinery per value;
    here each column's serializer is chosen once. Values must be given in full, in order."""
    version = prepared.protocol_version
    columns = [_serializer(c.type, version) for c in prepared.column_metadata]

    def bind(values: Sequence[Any]) -> BoundStatement:
        bound = BoundStatement(prepared)
        bound.values = [
            None if value is None else serialize(value)
            for serialize, value in zip(columns, values, strict=True)
        ]
        return bound

    return bind


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
