"""Plain HTTP GETs of pytest-pd's own and its clusters' URLs (stdlib urllib, no session, no retry),
in the three shapes callers want: the status, the body text, the body as JSON."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def get_status(url: str, timeout: float = 2.0, method: str = "GET") -> int | None:
    """HTTP status of a GET (or ``method``, with an empty body; error statuses included), or None
    when nothing answers in time."""
    request = urllib.request.Request(url, method=method, data=b"" if method != "GET" else None)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 (our own URLs)
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


def get_text(url: str, timeout: float) -> str:
    """The body of a GET as text (undecodable bytes replaced); raises what urllib raises
    (``HTTPError`` for an error status, ``URLError``/``OSError`` when nothing answers in time)."""
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (cluster URLs)
        return resp.read().decode("utf-8", errors="replace")


def get_json(url: str, timeout: float = 5.0) -> dict[str, Any]:
    """The body of a GET parsed as JSON; ``{"error": "TYPE: message"}`` instead when the GET fails
    (error status, nothing answering, timeout) or the body is not JSON. Never raises for those."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (cluster URLs)
            return json.loads(resp.read())
    except (OSError, ValueError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
