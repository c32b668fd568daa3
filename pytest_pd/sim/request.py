"""One request inside the worker: its sizes, its progress through prefill, KV hand-off and
decode, and the server-side trace (/sim/trace) of when each token was emitted and sent."""

from __future__ import annotations

import asyncio
from array import array
from typing import Any


class BadRequest(Exception):
    """A request the worker refuses (HTTP 400, or in band for an SGLang stream)."""


class Req:
    __slots__ = (
        "rid",
        "room",
        "prompt_tokens",
        "max_tokens",
        "finish_type",
        "arrival",
        "prefill_done",
        "kv_arrived",
        "token_times",
        "emitted",
        "event",
        "done",
        "cancelled",
        "offset",
        "ctx",
        "fault",
        "prompt_head",
        "sent_times",
        "sent_tokens",
        "streaming",
        "first_token_at",
        "first_sent_ts",
        "cached",
        "cache_keys",
    )

    def __init__(
        self,
        rid: str,
        room: Any,
        prompt_tokens: int,
        max_tokens: int,
        finish_type: str,
        arrival: float,
        offset: int,
    ) -> None:
        self.rid = rid
        self.room = room
        self.prompt_tokens = prompt_tokens
        self.max_tokens = max_tokens
        self.finish_type = finish_type
        self.arrival = arrival
        self.prefill_done: float | None = None
        self.kv_arrived: float | None = None
        # compact arrays: the trace of the last requests holds a time per token
        self.token_times = array("d")
        self.emitted = 0
        self.event = asyncio.Event()
        self.done = False
        self.cancelled = False
        self.offset = offset  # where its output starts in the vocabulary's output pool
        self.ctx = prompt_tokens
        self.fault = ""
        self.prompt_head: list[int] | None = None
        # per streamed chunk: when it was handed to the transport, and the tokens sent up to it
        self.sent_times = array("d")
        self.sent_tokens = array("l")
        self.streaming = False
        self.first_token_at: float | None = None
        self.first_sent_ts: float | None = None  # unix time the first chunk went out
        self.cached = 0  # prompt tokens found in the prefix cache
        self.cache_keys: list[int] | None = None  # its prompt's blocks (prefix_cache.block_keys)

    def emit(self, t: float) -> None:
        if self.first_token_at is None:
            self.first_token_at = t
        self.emitted += 1
        self.ctx += 1
        self.token_times.append(t)
        if self.emitted >= self.max_tokens:
            self.done = True
        self.event.set()

    async def wait_done(self) -> None:
        while not self.done:
            self.event.clear()
            await self.event.wait()

    def trace(self) -> dict[str, Any]:
        return {
            "rid": self.rid,
            "room": self.room,
            "arrival": self.arrival,
            "prefill_done": self.prefill_done,
            "kv_arrived": self.kv_arrived,
            "prompt_tokens": self.prompt_tokens,
            "cached_tokens": self.cached,
            "completion_tokens": self.emitted,
            "prompt_head": self.prompt_head,
            "first_sent": self.sent_times[0] if self.sent_times else None,
            "token_times": self.token_times.tolist(),
            "sent_times": self.sent_times.tolist(),
            "sent_tokens": self.sent_tokens.tolist(),
        }
