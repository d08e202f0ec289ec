"""uvicorn, set up for clients that are slow, idle or too many.

uvicorn's own knobs do most of it: `limit_concurrency` answers 503 once that
many connections or requests are open, `timeout_keep_alive` drops idle
keep-alive connections, h11's `max_incomplete_event_size` bounds a request's
head. Two gaps are closed here, in a subclass of its h11 protocol: a client
that connects and never finishes its request head (or starts one on a kept-alive
connection and stalls) is dropped after `client_timeout` seconds (uvicorn has
no timer before a request's headers), and connections beyond the cap and its
overflow (fd_limit.overflow) are closed at once, so open sockets (file
descriptors) stay bounded however many clients connect. Request bodies have their own deadline (routes._body).
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from outlier_tui.server.fd_limit import overflow

MAX_HEAD_BYTES = 16 * 1024  # request line and headers (h11's default, stated)


class GuardedH11Protocol(H11Protocol):
    """H11Protocol with a deadline for each request's head and a hard cap on open connections."""

    head_timeout = 10.0  # seconds from connecting (or from the last response) to a complete head
    max_open = 8192  # connections beyond this are closed without an answer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_open:
            transport.close()  # past the cap's overflow: the fd comes back now, not after a timeout
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not None and not self.cycle.response_complete:
            self._disarm()  # a request's head arrived: the app (and its body deadline) has it now

    def on_response_complete(self) -> None:
        self._arm()  # the next request's head must come within the deadline too
        super().on_response_complete()

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.head_timeout, self._expire)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _expire(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def server_config(app: Any, host: str, port: int, max_connections: int, client_timeout: float) -> uvicorn.Config:
    """uvicorn's Config for `outlier serve`: at most `max_connections` served at once (503 beyond),
    idle and slow clients dropped after `client_timeout` seconds."""
    protocol = type(
        "OutlierH11Protocol",
        (GuardedH11Protocol,),
        {"head_timeout": client_timeout, "max_open": max_connections + overflow(max_connections)},
    )
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol,
        limit_concurrency=max_connections + 1,  # uvicorn counts the asking connection itself
        timeout_keep_alive=client_timeout,  # type: ignore[arg-type]  # used as seconds, float is fine
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        log_level="info",
        timeout_graceful_shutdown=3,
    )
