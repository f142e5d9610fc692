"""The fault-injecting TCP proxy against a local echo server: delay, cut, restore."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from stream_app.services.tcp_proxy import TcpProxy


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=lambda c=conn: [c.sendall(d) for d in iter(
                lambda: c.recv(1024), b"")], daemon=True).start()  # fmt: skip

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1]
    server.close()


def echoed(sock: socket.socket) -> bool:
    sock.sendall(b"ping")
    return sock.recv(16) == b"ping"


def round_trip(port: int) -> float:
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        assert echoed(sock)
    return time.monotonic() - began


def test_replies_are_delayed_then_the_link_is_cut_and_restored(echo_port: int) -> None:
    with TcpProxy(echo_port) as proxy:
        round_trip(proxy.port)
        proxy.set_delay(0.3)
        assert round_trip(proxy.port) >= 0.3  # the reply waited
        proxy.set_delay(0.0)
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as open_link:
            assert echoed(open_link)  # the link is up (and the proxy holds it)
            proxy.cut()
            open_link.sendall(b"x")
            assert open_link.recv(16) == b""  # broken by the cut
        with pytest.raises(ConnectionRefusedError):
            round_trip(proxy.port)
        proxy.restore()
        round_trip(proxy.port)  # the same port again
