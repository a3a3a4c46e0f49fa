"""The HTTP server's client connections: deadlines and a cap, which aiohttp does not have.

aiohttp (3.13) waits for a request's headers as long as the client likes, lets a handler wait
as long as the client likes for the body, and accepts connections until the process runs out
of file descriptors. A thousand slow clients (half a request line, a body a byte at a time)
so held every descriptor, and 400 stalled uploads half a gigabyte of memory. Here:

- Header deadline: a connection completes its next request's headers within
  `header_timeout` of opening or of its previous request, or it is closed. That also ends
  idle keep-alive connections and clients that stop reading their answer.
- Body deadline: a request body arrives within `body_timeout` of its headers. A handler
  still reading it then gets `BodyCut`; the client gets a 408 and the connection closes.
- A cap of `max_connections`: when it is reached, a new connection pushes out the one that
  has waited longest for its next request (a slow or idle client), else the oldest one still
  receiving its request body (a prompt client's body takes milliseconds; a stalled upload would
  hold its slot for body_timeout). Only when every connection has a request being handled is
  the new one refused (a 503, closed at once). A client that sends its request promptly, such
  as a health check or a provider's webhook, therefore still gets in while slow clients fill
  the cap.
- Refusals before any body is read: a Content-Length above `max_body_bytes` (413), a
  Content-Encoding (415: providers do not compress requests, and a small compressed body
  can expand to a large one), header values that are not UTF-8 (400).

`GuardedSite` listens through a small protocol wrapper that admits, times and closes each
connection; the middleware tells it when a request starts and ends.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections.abc import Callable
from typing import Any, cast

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from leadd import metrics
from leadd.config import Config
from leadd.logs import get_logger

log = get_logger(__name__)

# Descriptors kept for everything but client connections: the database pool is added to
# this; aiohttp's client session opens up to 100 provider connections; the rest covers the
# listening socket, the event loop, log files and an embedded PostgreSQL's pipes.
OTHER_DESCRIPTORS = 100 + 64
_REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Connection: close\r\nContent-Length: 57\r\n\r\n"
    b'{"success": false, "error": "too many open connections"}\n'
)

Handler = Callable[[web.Request], Any]


class BodyCut(Exception):
    """Raised by reads of a request body that leadd stopped receiving: it did not arrive within
    body_timeout, the connection made room for another, or the request was refused before its
    body was read.

    Deliberately neither a TimeoutError nor an OSError: handlers map those to a database
    failure (503). aiohttp, which reads and discards an unread body after the answer so the
    client sees it ("lingering close"), gets it too and closes the connection; ServerLog keeps
    that out of the error log.
    """


class _Conn:
    """One accepted TCP connection."""

    __slots__ = ("transport", "request", "received", "timer")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.request: web.Request | None = None  # the request in progress
        self.received = False  # bytes arrived since the last request ended
        self.timer: asyncio.TimerHandle | None = None

    def cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class ConnectionGuard:
    """Admits, times and closes client connections; see the module docstring."""

    def __init__(
        self,
        *,
        header_timeout: float,
        body_timeout: float,
        max_connections: int,
        max_body_bytes: int,
    ) -> None:
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.max_connections = max_connections
        self.max_body_bytes = max_body_bytes
        # Insertion order is the eviction order: a connection moves to the end whenever it
        # starts waiting for a request, so the first idle one has waited longest.
        self._open: dict[asyncio.BaseTransport, _Conn] = {}

    @classmethod
    def from_config(cls, config: Config) -> ConnectionGuard:
        h = config.http
        configured = h.max_connections
        cap = descriptor_cap(configured, OTHER_DESCRIPTORS + config.database.pool_max)
        if cap < configured:
            log.warning(
                "http.max_connections_lowered",
                configured=configured,
                effective=cap,
                reason="the open-file limit (RLIMIT_NOFILE) leaves no room for more; "
                "raise it (systemd: LimitNOFILE=)",
            )
        return cls(
            header_timeout=h.header_timeout,
            body_timeout=h.body_timeout,
            max_connections=cap,
            max_body_bytes=h.max_body_bytes,
        )

    def protocol_factory(
        self, handler_factory: Callable[[], asyncio.Protocol]
    ) -> Callable[[], asyncio.Protocol]:
        """Wrap aiohttp's protocol factory (its `Server`) for `loop.create_server`."""
        return lambda: _GuardedProtocol(self, handler_factory)

    # ------------------------------------------------------------------ connections

    def admit(self, transport: asyncio.Transport) -> _Conn | None:
        if len(self._open) >= self.max_connections:
            victim = self._victim()
            if victim is None:
                metrics.HTTP_CONNECTIONS_CLOSED.labels("refused").inc()
                transport.write(_REFUSED)
                transport.close()
                return None
            self._close(victim, "evicted")
        conn = _Conn(transport)
        self._open[transport] = conn
        metrics.HTTP_CONNECTIONS.inc()
        self._await_request(conn)
        return conn

    def _victim(self) -> _Conn | None:
        """The connection a new one replaces at the cap; None when all are being handled."""
        receiving = None
        for conn in self._open.values():  # longest waiting first
            if conn.request is None:
                return conn
            if receiving is None and not conn.request.content.is_eof():
                receiving = conn
        return receiving

    def forget(self, conn: _Conn) -> None:
        conn.cancel_timer()
        if self._open.pop(conn.transport, None) is not None:
            metrics.HTTP_CONNECTIONS.dec()

    def _close(self, conn: _Conn, reason: str) -> None:
        metrics.HTTP_CONNECTIONS_CLOSED.labels(reason).inc()
        log.debug("http.connection_closed", reason=reason)
        self.forget(conn)
        if conn.request is not None:  # a handler reading the body: it gets BodyCut, not a hang
            _cut_body(conn.request, "connection closed to make room for another")
        conn.transport.abort()

    def _await_request(self, conn: _Conn) -> None:
        conn.cancel_timer()
        conn.request = None
        conn.received = False
        # Move to the end: the longest-waiting connection is the first one evicted.
        self._open.pop(conn.transport, None)
        self._open[conn.transport] = conn
        loop = asyncio.get_running_loop()
        conn.timer = loop.call_later(self.header_timeout, self._header_deadline, conn)

    def _header_deadline(self, conn: _Conn) -> None:
        conn.timer = None
        if conn.request is None:
            self._close(conn, "header_timeout" if conn.received else "idle")

    # ------------------------------------------------------------------ requests

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        conn = self._open.get(request.transport) if request.transport is not None else None
        if conn is not None:
            self._start_request(conn, request)
        try:
            self._check_before_body(request)
            response: web.StreamResponse = await handler(request)
            return response
        except BodyCut as exc:
            # Its traceback holds read()'s frame, and with it the partial body, in a cycle
            # through the request: drop it now instead of at the next full garbage collection.
            exc.__traceback__ = None
            raise _closing(
                request,
                web.HTTPRequestTimeout(
                    text=f"request body not received within {self.body_timeout:g} s"
                ),
            ) from None
        except web.HTTPRequestEntityTooLarge as exc:
            raise _closing(request, exc) from None
        finally:
            if conn is not None and conn.transport in self._open:
                self._await_request(conn)

    def _start_request(self, conn: _Conn, request: web.Request) -> None:
        conn.cancel_timer()
        conn.request = request
        if request.body_exists:
            loop = asyncio.get_running_loop()
            conn.timer = loop.call_later(self.body_timeout, self._body_deadline, conn, request)

    def _body_deadline(self, conn: _Conn, request: web.Request) -> None:
        conn.timer = None
        if not request.content.is_eof():
            metrics.HTTP_CONNECTIONS_CLOSED.labels("body_timeout").inc()
            _cut_body(request, "request body not received in time")

    def _check_before_body(self, request: web.Request) -> None:
        """Refuse what can be refused from the headers alone, before reading any body."""
        for value in request.headers.values():
            if not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    raise _closing(
                        request, web.HTTPBadRequest(text="header values must be UTF-8")
                    ) from None
        if not request.body_exists:
            return
        if request.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
            raise _closing(
                request,
                web.HTTPUnsupportedMediaType(text="compressed request bodies are not accepted"),
            )
        length = request.content_length
        if length is not None and length > self.max_body_bytes:
            raise _closing(request, web.HTTPRequestEntityTooLarge(self.max_body_bytes, length))


def _closing(request: web.Request, exc: web.HTTPException) -> web.HTTPException:
    """`exc`, answered on a connection that then closes without reading the rest of the body."""
    _cut_body(request, "request refused before its body was read")
    exc.force_close()
    return exc


def _cut_body(request: web.Request, reason: str) -> None:
    if not request.content.is_eof():
        request.content.set_exception(BodyCut(reason))


class _GuardedProtocol(asyncio.Protocol):
    """Sits between asyncio and aiohttp's RequestHandler for one connection."""

    def __init__(
        self, guard: ConnectionGuard, handler_factory: Callable[[], asyncio.Protocol]
    ) -> None:
        self._guard = guard
        self._factory = handler_factory
        self._inner: asyncio.Protocol | None = None
        self._conn: _Conn | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's transports do not subclass asyncio's.
        self._conn = self._guard.admit(cast(asyncio.Transport, transport))
        if self._conn is not None:
            self._inner = self._factory()
            self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._guard.forget(self._conn)
        if self._inner is not None:
            self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._conn is not None and self._conn.request is None:
            self._conn.received = True
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()


class GuardedSite(web.BaseSite):
    """aiohttp's TCPSite, listening through the guard's protocol wrapper."""

    __slots__ = ("_guard", "_host", "_port")

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, guard: ConnectionGuard
    ) -> None:
        super().__init__(runner)
        self._guard, self._host, self._port = guard, host, port

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    @property
    def port(self) -> int:
        """The bound port (the configured one, or the one picked for port 0)."""
        sockets = getattr(self._server, "sockets", None) or ()
        return int(sockets[0].getsockname()[1]) if sockets else self._port

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._guard.protocol_factory(server), self._host, self._port, backlog=self._backlog
        )


def descriptor_cap(configured: int, reserve: int) -> int:
    """`configured`, lowered so that client connections leave `reserve` descriptors free."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured
    return max(1, min(configured, soft - reserve))


class ServerLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's server log, except that a request aiohttp cannot parse is the client's error
    (a warning without a traceback, not an ERROR), and a body we cut is no error at all."""

    def __init__(self) -> None:
        super().__init__(logging.getLogger("aiohttp.server"), {})

    def exception(self, msg: Any, *args: Any, exc_info: Any = True, **kwargs: Any) -> None:
        if isinstance(exc_info, HttpProcessingError):
            log.warning("http.bad_request", status=exc_info.code, reason=exc_info.message)
            return
        if isinstance(exc_info, BodyCut):  # aiohttp's lingering read after our 408/413/415
            return
        super().exception(msg, *args, exc_info=exc_info, **kwargs)
