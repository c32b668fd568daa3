"""Plain HTTP GETs of pytest-pd's own and its clusters' URLs (stdlib ``http.client``, no session, no
retry), in the three shapes callers want: the status, the body text, the body as JSON; and the
small JSON POSTs of probes (:func:`post_json`).

``timeout`` is the whole exchange's: connecting, the head and every byte of the body. A server that
answers slowly, or trickles its body a byte at a time (a stuck engine's ``/metrics``), is given up
on at the deadline, not allowed another ``timeout`` per read."""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
from typing import Any
from urllib.parse import urlsplit


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out")
    return left


def _fetch(
    url: str, timeout: float, method: str = "GET", payload: bytes | None = None
) -> tuple[int, str, bytes]:
    """(status, reason, body) of one request, all of it within ``timeout`` seconds. Raises
    ``TimeoutError`` at the deadline and ``urllib.error.URLError`` when nothing answers."""
    deadline = time.monotonic() + timeout
    parts = urlsplit(url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = kind(parts.hostname or "localhost", parts.port, timeout=timeout)
    try:
        try:
            conn.connect()
        except TimeoutError:
            raise
        except OSError as exc:
            raise urllib.error.URLError(exc) from exc
        sock = conn.sock  # the response reads from it too (http.client lets go of it on close)
        assert sock is not None
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        sock.settimeout(_left(deadline))
        if payload is not None:
            conn.request(method, target, body=payload, headers={"Content-Type": "application/json"})
        else:
            conn.request(method, target, body=None if method == "GET" else b"")
        sock.settimeout(_left(deadline))
        resp = conn.getresponse()
        body = bytearray()
        while True:
            sock.settimeout(_left(deadline))  # each read gets only what is left
            chunk = resp.read1(65536)
            if not chunk:
                return resp.status, resp.reason, bytes(body)
            body += chunk
    except TimeoutError:
        raise TimeoutError("timed out") from None
    finally:
        conn.close()


def get_status(url: str, timeout: float = 2.0, method: str = "GET") -> int | None:
    """HTTP status of a GET (or ``method``, with an empty body; error statuses included), or None
    when nothing answers in time."""
    try:
        return _fetch(url, timeout, method)[0]
    except (OSError, http.client.HTTPException):
        return None


def get_text(url: str, timeout: float) -> str:
    """The body of a GET as text (undecodable bytes replaced); raises ``urllib.error.HTTPError`` for
    an error status, ``URLError`` when nothing answers, ``TimeoutError`` at the deadline (all
    ``OSError``)."""
    try:
        status, reason, body = _fetch(url, timeout)
    except http.client.HTTPException as exc:
        raise urllib.error.URLError(f"bad HTTP response: {exc!r}") from exc
    if status >= 400:
        raise urllib.error.HTTPError(url, status, reason, {}, None)  # type: ignore[arg-type]
    return body.decode("utf-8", errors="replace")


def get_json(url: str, timeout: float = 5.0) -> dict[str, Any]:
    """The body of a GET parsed as JSON; ``{"error": "TYPE: message"}`` instead when the GET fails
    (error status, nothing answering, timeout) or the body is not JSON. Never raises for those."""
    try:
        return json.loads(get_text(url, timeout))
    except (OSError, ValueError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def post_json(url: str, body: Any, timeout: float) -> tuple[int, Any]:
    """POST ``body`` as JSON: (status, the answer parsed as JSON, or None when it is not JSON),
    all of it within ``timeout``; raises ``OSError`` (``TimeoutError`` at the deadline) when
    nothing answers in time, ``ValueError`` for a malformed HTTP answer."""
    try:
        status, _, answer = _fetch(url, timeout, "POST", json.dumps(body).encode())
    except http.client.HTTPException as exc:
        raise ValueError(f"bad HTTP response: {exc!r}") from exc
    try:
        return status, json.loads(answer)
    except ValueError:
        return status, None
