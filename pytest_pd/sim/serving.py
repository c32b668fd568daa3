"""What both API dialects do around a request: read its body, start it (faults that strike
first, the stream's headers, the work up to its first token) and send its stream's chunks."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from pytest_pd.sim import faults
from pytest_pd.sim.request import BadRequest, Req
from pytest_pd.sim.wire import compact, openai_error
from pytest_pd.sim.worker import SimWorker


async def read_json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json(loads=json.loads)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"malformed JSON body: {e}") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


def sse_response() -> web.StreamResponse:
    return web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})


async def stream_only(request: web.Request, payload: bytes) -> web.StreamResponse:
    """A stream whose whole body is ``payload``."""
    resp = sse_response()
    await resp.prepare(request)
    await resp.write(payload)
    await resp.write_eof()
    return resp


async def begin(
    worker: SimWorker, request: web.Request, r: Req, body: dict[str, Any], resp: web.StreamResponse | None
) -> web.StreamResponse | None:
    """Faults that strike first; then, for a stream (``resp``), its headers go out at once
    (as SGLang's server sends them before any token); then the request runs up to its
    first token. None when it goes on, else the response to return: an HTTP error, or for
    a stream the same response ended with an in-band error event (as SGLang does)."""
    early = await faults.before_work(r, worker.params, worker.scheduler)
    if early is not None:
        return early
    if resp is not None:
        await resp.prepare(request)
    try:
        await worker.run_request(r, body)
    except RuntimeError as e:
        r.cancelled = True
        if resp is None:
            return openai_error(500, str(e), "InternalServerError")
        error = {"error": {"message": str(e), "type": "InternalServerError", "code": 500}}
        await resp.write(b"data: " + compact(error).encode() + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp
    return None


async def send_chunk(
    worker: SimWorker, request: web.Request, resp: web.StreamResponse, r: Req, chunk: bytes
) -> bool:
    """Write one SSE chunk (noting when it was handed to the transport and how many tokens
    were sent with it); False once a fault cut the stream."""
    r.sent_times.append(worker.clock.now())
    r.sent_tokens.append(r.emitted)
    await resp.write(chunk)
    if r.fault:
        if faults.cut_here(request, r, worker.params):
            return False
        await faults.maybe_malformed(resp, r, worker.params)
    return True


def stream_due(n: int, sent: int, done: bool, interval: int) -> bool:
    """Whether a stream that sent ``sent`` of the ``n`` tokens emitted so far sends a chunk now,
    as SGLang's ``--stream-interval`` does: the first token at once, then whenever the count
    reaches 1 + a multiple of ``interval`` (every token when it is 1), and the last one. The
    chunk carries every token emitted since the previous one."""
    if n <= sent:
        return False
    return done or interval <= 1 or (n - 1) // interval > (sent - 1) // interval
