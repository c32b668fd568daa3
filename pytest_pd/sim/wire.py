"""Encodings both API dialects put on the wire: compact JSON, and the error body of SGLang's
OpenAI-compatible API, which is also the shape of the sim's own errors (KV long poll, faults)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


def compact(obj: Any) -> str:
    """JSON as SGLang writes its stream events (orjson: no spaces)."""
    return json.dumps(obj, separators=(",", ":"))


def openai_error(status: int, message: str, etype: str = "BadRequestError") -> web.Response:
    """An error of SGLang's OpenAI-compatible API (/v1/...): SGLang's flat fields, plus (sim
    only) OpenAI's ``error`` object, which clients and the existing tests read. Also the shape of
    the sim's own errors (KV long-poll, faults): readable either way."""
    return web.json_response(
        {
            "object": "error",
            "message": message,
            "type": etype,
            "param": None,
            "code": status,
            "error": {"message": message, "type": etype, "code": status},
        },
        status=status,
    )
