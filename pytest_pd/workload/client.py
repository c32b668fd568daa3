"""aiohttp streaming client for one request: SGLang ``/generate`` or OpenAI ``/v1/completions``.

Timestamps are ``time.perf_counter()`` values taken as each SSE line arrives, before it is parsed.
Token counts come from the server (``meta_info`` / ``usage``), never from counting events.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp

from .prompts import API_GENERATE, Prompt, WorkloadError

# error kinds a RequestRecord can carry
HTTP_STATUS = "http_status"
TIMEOUT = "timeout"
CONNECTION = "connection"
MALFORMED_STREAM = "malformed_stream"
NO_TOKENS = "no_tokens"
INCOMPLETE_STREAM = "incomplete_stream"
ERROR_KINDS = (HTTP_STATUS, TIMEOUT, CONNECTION, MALFORMED_STREAM, NO_TOKENS, INCOMPLETE_STREAM)

BODY_EXCERPT_CHARS = 500
READ_BUFSIZE = 1 << 20  # 1 MiB: also bounds the longest SSE line aiohttp will accept (2x this)


@dataclass
class RequestRecord:
    """What happened to one request (all times are perf_counter seconds)."""

    index: int
    prompt_len: int
    expected_output_len: int
    t_queued: float | None = None
    t_start: float | None = None
    t_first_token: float | None = None
    t_end: float | None = None
    chunk_times: list[float] = field(default_factory=list)
    # cumulative server-reported completion tokens, parallel to chunk_times; empty when the API
    # did not report a count on every output-bearing chunk (then each chunk counts as one gap)
    chunk_tokens: list[int] = field(default_factory=list)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error_kind: str | None = None
    error: str = ""
    status: int | None = None

    @property
    def ok(self) -> bool:
        return self.error_kind is None

    def fail(self, kind: str, message: str, *, t: float | None = None) -> None:
        self.error_kind = kind
        self.error = message
        self.t_end = time.perf_counter() if t is None else t

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RequestRecord:
        return cls(**data)


def endpoint_url(base_url: str, api: str) -> str:
    path = "/generate" if api == API_GENERATE else "/v1/completions"
    return base_url.rstrip("/") + path


def request_payload(api: str, prompt: Prompt, *, max_tokens: int, model: str | None) -> dict:
    ids = [int(t) for t in prompt.token_ids]
    if api == API_GENERATE:
        return {
            "input_ids": ids,
            "sampling_params": {
                "max_new_tokens": max_tokens,
                "ignore_eos": True,
                "temperature": 0,
            },
            "stream": True,
        }
    return {
        "model": model,
        "prompt": ids,
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


async def fetch_model_id(session: aiohttp.ClientSession, base_url: str, timeout_s: float) -> str:
    """First model id from ``GET /v1/models`` (needed by ``/v1/completions``)."""
    url = base_url.rstrip("/") + "/v1/models"
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            body = await resp.text()
            if resp.status // 100 != 2:
                raise WorkloadError(
                    f"GET {url} returned HTTP {resp.status}: {body[:BODY_EXCERPT_CHARS]!r}. "
                    "The completions API needs a model id; check the server/router, or use "
                    "api='generate'."
                )
            data = json.loads(body)
            return str(data["data"][0]["id"])
    except WorkloadError:
        raise
    except (asyncio.TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise WorkloadError(
            f"Cannot reach {url} to look up the model id: {type(exc).__name__}: {exc}. "
            "Check that the server/router is up and the base URL is right."
        ) from exc
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise WorkloadError(
            f"GET {url} did not return an OpenAI model list with at least one model "
            f"({type(exc).__name__}: {exc}); check the server, or use api='generate'."
        ) from exc


class _StreamState:
    """Per-request SSE parsing state; turns decoded events into the record's fields."""

    def __init__(self, api: str, record: RequestRecord) -> None:
        self.api = api
        self.rec = record
        self.text_len = 0
        self.last_tokens = 0
        self.counts_complete = True  # every output-bearing chunk carried a server count

    def _output_chunk(self, t: float, tokens: int | None) -> None:
        rec = self.rec
        if rec.t_first_token is None:
            rec.t_first_token = t
        rec.chunk_times.append(t)
        if tokens is None:
            self.counts_complete = False
        else:
            rec.chunk_tokens.append(tokens)

    def _usage(self, usage: Any) -> int | None:
        if not isinstance(usage, dict):
            return None
        if isinstance(usage.get("prompt_tokens"), int):
            self.rec.prompt_tokens = usage["prompt_tokens"]
        ct = usage.get("completion_tokens")
        if isinstance(ct, int):
            self.rec.completion_tokens = ct
            return ct
        return None

    def event(self, data: Any, t: float) -> str | None:
        """Handle one decoded ``data:`` object. Returns an error message for in-band errors."""
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        if "error" in data and data.get("error"):
            err = data["error"]
            if isinstance(err, dict):
                code = err.get("code")
                if isinstance(code, int):
                    self.rec.status = code
                return str(err.get("message", err))
            return str(err)
        if self.api == API_GENERATE:
            text = data.get("text", "")
            if not isinstance(text, str):
                raise ValueError("'text' is not a string")
            tokens = self._usage(data.get("meta_info"))
            grew_text = len(text) > self.text_len
            grew_tokens = tokens is not None and tokens > self.last_tokens
            if grew_tokens or (tokens is None and grew_text):
                self._output_chunk(t, tokens)
            self.text_len = max(self.text_len, len(text))
            if tokens is not None:
                self.last_tokens = max(self.last_tokens, tokens)
            return None
        # /v1/completions: text deltas in choices, usage on the final chunk (or on every chunk)
        choices = data.get("choices") or []
        if not isinstance(choices, list):
            raise ValueError("'choices' is not a list")
        delta = ""
        for choice in choices:
            if isinstance(choice, dict) and isinstance(choice.get("text"), str):
                delta += choice["text"]
        tokens = self._usage(data.get("usage"))
        grew_tokens = tokens is not None and tokens > self.last_tokens
        # a usage-only chunk (no choices) reports the total but carries no output
        if choices and (delta or grew_tokens):
            self._output_chunk(t, tokens)
        if tokens is not None:
            self.last_tokens = max(self.last_tokens, tokens)
        return None

    def finish(self) -> None:
        rec = self.rec
        if not self.counts_complete or len(rec.chunk_tokens) != len(rec.chunk_times):
            rec.chunk_tokens = []


async def send_request(
    session: aiohttp.ClientSession,
    base_url: str,
    api: str,
    prompt: Prompt,
    record: RequestRecord,
    *,
    max_tokens: int,
    timeout_s: float,
    model: str | None = None,
) -> RequestRecord:
    """Send one streaming request and fill ``record``. Never raises for request failures.

    ``record.t_start`` is set here unless the caller already set it (the runner sets it right
    after acquiring the concurrency slot).
    """
    url = endpoint_url(base_url, api)
    payload = request_payload(api, prompt, max_tokens=max_tokens, model=model)
    state = _StreamState(api, record)
    got_response = False
    done = False
    if record.t_start is None:
        record.t_start = time.perf_counter()
    try:
        async with session.post(
            url, json=payload, timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as resp:
            got_response = True
            record.status = resp.status
            if resp.status // 100 != 2:
                body = await resp.text(errors="replace")
                record.fail(HTTP_STATUS, f"HTTP {resp.status} from {url}: "
                            f"{body[:BODY_EXCERPT_CHARS]}")
                return record
            while True:
                raw = await resp.content.readline()
                t = time.perf_counter()
                if not raw:
                    break
                record.t_end = t
                line = raw.strip()
                if not line or line.startswith(b":"):
                    continue
                if not line.startswith(b"data:"):
                    continue  # event:/id:/retry: fields carry nothing we measure
                data = line[5:].strip()
                if data == b"[DONE]":
                    done = True
                    continue
                try:
                    obj = json.loads(data)
                    in_band_error = state.event(obj, t)
                except (ValueError, TypeError, UnicodeDecodeError) as exc:
                    snippet = data[:200].decode("utf-8", errors="replace")
                    record.fail(MALFORMED_STREAM,
                                f"unparseable data line from {url} ({exc}): {snippet!r}", t=t)
                    return record
                if in_band_error is not None:
                    record.fail(HTTP_STATUS, f"error event in stream from {url}: "
                                f"{in_band_error[:BODY_EXCERPT_CHARS]}", t=t)
                    return record
    except asyncio.TimeoutError:
        record.fail(TIMEOUT, f"no complete response from {url} within {timeout_s:g} s")
        return record
    except aiohttp.ClientPayloadError as exc:
        record.fail(INCOMPLETE_STREAM, f"response body from {url} was cut: {exc}")
        return record
    except ValueError as exc:  # aiohttp: line longer than the read buffer allows
        record.fail(MALFORMED_STREAM, f"unreadable stream from {url}: {exc}")
        return record
    except (aiohttp.ClientError, OSError) as exc:
        kind = INCOMPLETE_STREAM if got_response else CONNECTION
        record.fail(kind, f"{type(exc).__name__} talking to {url}: {exc}")
        return record
    finally:
        state.finish()
        if record.t_end is None:
            record.t_end = time.perf_counter()

    t_end = record.t_end
    if not done:
        record.fail(INCOMPLETE_STREAM, f"stream from {url} ended without 'data: [DONE]' after "
                    f"{len(record.chunk_times)} output chunks", t=t_end)
    elif record.t_first_token is not None and record.completion_tokens is None:
        what = "meta_info.completion_tokens" if api == API_GENERATE else "usage.completion_tokens"
        record.fail(MALFORMED_STREAM, f"stream from {url} carried output but no {what}; token "
                    "counts must come from the server", t=t_end)
    elif record.t_first_token is None or not record.completion_tokens:
        record.fail(NO_TOKENS, f"stream from {url} finished with no output tokens "
                    f"(server-reported completion_tokens={record.completion_tokens})", t=t_end)
    return record
