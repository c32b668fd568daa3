"""HTTP/1.1 over a fresh connection per request, handing on each piece of the body with the time
the socket read that brought it returned.

The connection's protocol is ours (:class:`Exchange`, an ``asyncio.Protocol``) on httptools'
parser: ``data_received`` takes ``perf_counter()`` first, then the parser takes the body out of
the HTTP framing and the caller's sink gets each piece with that time, in the same callback. No
task wakes up per chunk (the request's task waits for the end of the body only), so a streamed
token costs one callback, and with 1000+ streams on one loop a stamp is late only by the reads
handled before it.

A fresh connection per request, as SGLang's bench_serving does: on a reused keep-alive connection
the router's small first chunk can sit ~20-40 ms behind Nagle and the client's delayed ACK, which
shows up as TTFT. Each host is resolved once per :class:`Dialer`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import sys
import time
import zlib
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlsplit

import httptools

Sink = Callable[[bytes, float], None]
"""sink(body bytes, perf_counter time of the read they came in)"""

MAX_HEAD_BYTES = 1 << 16
"""Most bytes read before the response headers end; more fail the request."""
MAX_EARLY_BYTES = 1 << 22
"""Most body bytes held (with their read times) before the caller attaches a sink; past this,
reading pauses until it does."""
DECODED_PIECE = 1 << 16  # a compressed body is inflated this much at a time (bounded memory)
DEFAULT_HEADERS = (("Accept-Encoding", "gzip, deflate"), ("Connection", "close"))


class HTTPError(Exception):
    """The exchange failed at the HTTP level (see the subclasses); socket errors stay OSError."""


class Disconnected(HTTPError):
    """The server closed the connection before the response headers were complete."""


class BadResponse(HTTPError):
    """The status line or headers cannot be parsed, or are too long."""


class BodyCut(HTTPError):
    """The body ended before its framing said it would (connection closed or reset), its framing
    is broken, or its content encoding cannot be decoded."""


class Exchange(asyncio.Protocol):
    """One request and its response on a connection of its own.

    The transport side (``data_received``, the parser's ``on_*`` callbacks) runs in the event
    loop's callbacks; the request's task awaits :meth:`head`, then :meth:`stream` or
    :meth:`excerpt`, and always :meth:`close`. Body bytes that come before the task attached its
    sink (with the headers, say) keep the time of their own read.

    The parser (which holds this exchange's callbacks) is dropped once the response ends, fails
    or is closed: no reference cycle outlives the request, so reference counting frees it while
    the runner keeps the cyclic GC off.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.parser: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.t = 0.0  # when the read being parsed returned
        self.head_bytes = 0
        self.header_list: list[tuple[str, str]] = []
        self.status = 0
        self.headers: dict[str, str] = {}  # lower-case names
        self.headers_done = False
        self.until_eof = False  # no length nor chunks: the body ends with the connection
        self.complete = False
        self.error: BaseException | None = None
        self.sink: Sink | None = None
        self.early: list[tuple[bytes, float]] = []
        self.early_bytes = 0
        self.paused = False
        self.waiter: asyncio.Future[None] | None = None

    # -- the request's task ----------------------------------------------------------------

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def head(self) -> None:
        """Wait for the status line and headers (``status``, ``headers``)."""
        await self._until(lambda: self.headers_done)

    async def stream(self, sink: Sink) -> None:
        """Hand every body byte to ``sink`` with the time of its read, until the body ends.
        Raises :class:`BodyCut` (or OSError) when it does not end well, and whatever ``sink``
        raised (the exchange then ends)."""
        coding = self.headers.get("content-encoding", "").strip().lower()
        if coding in ("gzip", "deflate"):
            sink = _inflating(sink, coding)
        early, self.early, self.early_bytes = self.early, [], 0
        for data, t in early:
            sink(data, t)
        if not self.complete and self.error is None:
            self.sink = sink
            if self.paused and self.transport is not None:
                self.paused = False
                self.transport.resume_reading()
        await self._until(lambda: self.complete)

    async def excerpt(self, limit: int) -> bytes:
        """The body's first ``limit`` bytes (all of it when shorter); the rest is not read."""
        kept = bytearray()

        def keep(data: bytes, t: float) -> None:
            kept.extend(data[: limit - len(kept)])
            if len(kept) >= limit:
                self._finish()

        await self.stream(keep)
        return bytes(kept)

    def close(self) -> None:
        self.parser = self.sink = self.error = None  # the error's traceback holds our caller
        self.early = []
        if self.transport is not None:
            self.transport.close()

    async def _until(self, ready: Callable[[], bool]) -> None:
        while not ready():
            if self.error is not None:
                raise self.error
            self.waiter = self.loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None

    # -- the event loop's callbacks --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        if parser is None:
            return
        self.t = time.perf_counter()
        try:
            parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self.headers_done:
                self._end(BodyCut(f"malformed HTTP framing: {exc}"))
            else:
                self._end(BadResponse(f"malformed status line or headers: {exc}"))
            return
        if not self.headers_done:
            self.head_bytes += len(data)
            if self.head_bytes > MAX_HEAD_BYTES:
                self._end(
                    BadResponse(f"no end of the response headers in their first {self.head_bytes} bytes")
                )

    def connection_lost(self, exc: Exception | None) -> None:
        if self.parser is None:
            return
        if not self.headers_done:
            self._end(
                exc
                or Disconnected("the server closed the connection before the response headers were complete")
            )
        elif exc is None and self.until_eof:
            self._finish()
        elif exc is None:
            self._end(BodyCut("the connection closed before the end of the body"))
        else:
            self._end(BodyCut(f"{type(exc).__name__}: {exc}"))

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_list.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        status = self.parser.get_status_code()
        if status < 200:  # an interim answer (100 Continue, 103 Early Hints): the real one follows
            self.header_list.clear()
            return
        headers: dict[str, str] = {}
        for name, value in self.header_list:
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        self.status, self.headers, self.headers_done = status, headers, True
        self.until_eof = (
            status not in (204, 304)
            and "content-length" not in headers
            and "chunked" not in headers.get("transfer-encoding", "").lower()
        )
        self._wake()

    def on_body(self, body: bytes) -> None:
        sink = self.sink
        if sink is not None:
            try:
                sink(body, self.t)
            except Exception as exc:  # noqa: BLE001 - the request's task re-raises it
                self._end(exc)
        elif self.parser is not None:
            self.early.append((body, self.t))
            self.early_bytes += len(body)
            if self.early_bytes > MAX_EARLY_BYTES and not self.paused and self.transport:
                self.paused = True
                self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if self.headers_done and self.error is None:
            self._finish()

    def _finish(self) -> None:
        self.complete = True
        self.parser = self.sink = None
        self._wake()

    def _end(self, exc: BaseException) -> None:
        """Fail the exchange and drop the connection; the request's task raises ``exc``."""
        self.error = exc
        self.parser = self.sink = None
        self.early = []
        if self.transport is not None:
            self.transport.close()
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


def _inflating(sink: Sink, coding: str) -> Sink:
    """``sink`` behind a gzip / deflate decoder, fed at most :data:`DECODED_PIECE` at a time."""
    inflater = zlib.decompressobj(wbits=32 + zlib.MAX_WBITS)  # zlib or gzip header, detected

    def inflate(data: bytes, t: float) -> None:
        try:
            while data:
                out = inflater.decompress(data, DECODED_PIECE)
                if out:
                    sink(out, t)
                data = inflater.unconsumed_tail
        except zlib.error as exc:
            raise BodyCut(f"cannot decode the {coding} body: {exc}") from None

    return inflate


class Dialer:
    """Opens a fresh connection for each request and sends it; resolves each host once."""

    def __init__(self) -> None:
        self._addresses: dict[tuple[str, int], list[Any]] = {}
        self._lookups: dict[tuple[str, int], asyncio.Future[list[Any]]] = {}
        self._tls: ssl.SSLContext | None = None

    async def open(
        self, method: str, url: str, headers: tuple[tuple[str, str], ...] = (), body: bytes | None = None
    ) -> Exchange:
        """Connect to ``url``'s host and send the request; the exchange is the caller's to
        :meth:`Exchange.close`."""
        parts = urlsplit(url)
        tls = parts.scheme == "https"
        host = parts.hostname or ""
        port = parts.port or (443 if tls else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc.rpartition('@')[2]}"]
        lines += [f"{name}: {value}" for name, value in (*headers, *DEFAULT_HEADERS)]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        request = "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + (body or b"")
        exchange = await self._connect(host, port, tls)
        exchange.send(request)
        return exchange

    async def _connect(self, host: str, port: int, tls: bool) -> Exchange:
        loop = asyncio.get_running_loop()
        error: OSError | None = None
        for family, kind, proto, _, address in await self._resolve(host, port):
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                await loop.sock_connect(sock, address)
                _, exchange = await loop.create_connection(
                    lambda: Exchange(loop),
                    sock=sock,
                    ssl=self._tls_context() if tls else None,
                    server_hostname=host if tls else None,
                )
                return exchange
            except OSError as exc:
                sock.close()
                error = exc
            except BaseException:
                sock.close()
                raise
        assert error is not None  # getaddrinfo returns at least one address or raises
        raise error

    async def _resolve(self, host: str, port: int) -> list[Any]:
        """getaddrinfo's answer, asked once per host. A wave of requests never waits on a
        lookup that is done (an IP address needs none): their connects stay spread over the loop
        iterations the runner starts them in, instead of one burst of SYNs that overflows the
        server's listen backlog (each one dropped costs a 1 s SYN retransmit)."""
        key = (host, port)
        found = self._addresses.get(key)
        if found is not None:
            return found
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
            found = [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port))]
            self._addresses[key] = found
            return found
        lookup = self._lookups.get(key)
        if lookup is None:
            lookup = asyncio.ensure_future(
                asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            )
            self._lookups[key] = lookup
        try:
            found = await asyncio.shield(lookup)  # one request's timeout must not cancel it
        finally:
            if lookup.done() and self._lookups.get(key) is lookup:
                del self._lookups[key]  # a failed lookup is asked again by the next request
        self._addresses[key] = found
        return found

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls


def deadline(timeout_s: float) -> Any:
    """One timer for the whole request: ``asyncio.TimeoutError`` when it fires."""
    if sys.version_info >= (3, 11):
        return asyncio.timeout(timeout_s)
    return _WaitForDeadline(timeout_s)


class _WaitForDeadline:
    """Python 3.10 stand-in for ``asyncio.timeout``: cancel the task at the deadline and turn
    that cancellation into ``asyncio.TimeoutError``."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.handle: asyncio.TimerHandle | None = None
        self.fired = False

    async def __aenter__(self) -> None:
        task = asyncio.current_task()
        assert task is not None

        def fire() -> None:
            self.fired = True
            task.cancel()

        self.handle = asyncio.get_running_loop().call_later(self.timeout_s, fire)

    async def __aexit__(self, et: Any, exc: Any, tb: Any) -> bool:
        assert self.handle is not None
        self.handle.cancel()
        if self.fired and et is asyncio.CancelledError:
            raise asyncio.TimeoutError
        return False
