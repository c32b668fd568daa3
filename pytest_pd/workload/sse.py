"""Incremental decoder of one streamed answer (server-sent events carrying JSON), filling its
:class:`RequestRecord`: output chunks with their arrival times, server token counts, ``[DONE]``.

Pure: no I/O and no clock; the transport hands over body bytes with the time they were read.
Token counts come from the server (``meta_info`` / ``usage``), never from counting events. On the
OpenAI APIs (``/v1/completions``, ``/v1/chat/completions``) a chunk carries a cumulative count only
when the server sends continuous usage; each output chunk's text is kept too, so that without
counts the run's tokenizer can count them after the run (:mod:`.chunk_count`).

A stream is complete at ``[DONE]``, or, for servers that never send it (``transformers serve``
ends its streams after the last chunk), when its body ended cleanly after a finish reason; a
body that just stops (a router closing the stream of a killed worker) is incomplete.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from .record import (
    INCOMPLETE_STREAM,
    MALFORMED_STREAM,
    NO_TOKENS,
    TOKENS_ONE_PER_CHUNK,
    TOKENS_SERVER,
    RequestRecord,
)
from .spec import API_CHAT, API_GENERATE

MAX_SSE_LINE_BYTES = 8 << 20
"""Longest SSE line the client holds while waiting for its end; a longer one fails the request
(malformed_stream) instead of growing without bound. SGLang's last cumulative ``/generate`` event
of a 128k-token output is ~1.5 MB (ids and text); decoding a line costs ~4x its size."""


class InBandError(Exception):
    """The stream said the request failed: an error event, or SGLang's abort finish reason."""


class LineTooLong(ValueError):
    """An SSE line over :data:`MAX_SSE_LINE_BYTES`; the message says how long it got."""


@dataclass
class Answer:
    """What the server answered to one request: output token ids (SGLang ``/generate``, whose
    events carry ``output_ids``, cumulative or, with ``--incremental-streaming-output``, each
    event's new ones) and text (the OpenAI APIs' streamed pieces)."""

    ids: list[int] = field(default_factory=list)
    text: str = ""

    def add_ids(self, ids: object, total: int | None) -> None:
        """One ``/generate`` event's ``output_ids``; ``total``: its cumulative token count. An
        event holding as many ids as the count so far is cumulative (it replaces), else it holds
        the new ones (they are appended)."""
        if not isinstance(ids, list):
            return
        if total is not None and len(ids) == total:
            self.ids = ids
        else:
            self.ids.extend(ids)


class SSEStream:
    """Incremental SSE decoder for one response: feed it raw body bytes with their arrival time.

    Splits complete lines (a partial line waits for the next read; it is stamped with the time
    the read that completed it returned), decodes ``data:`` lines with orjson and records output
    chunks, server token counts and ``[DONE]``. Raises ``ValueError`` for a malformed line (and
    its :class:`LineTooLong` for a line over :data:`MAX_SSE_LINE_BYTES`) and :class:`InBandError`
    for an error event.
    """

    __slots__ = (
        "generate",
        "chat",
        "texts",
        "rec",
        "tail",
        "text_len",
        "last_tokens",
        "counts_complete",
        "done",
        "finished",
        "times",
        "tokens",
        "answer",
    )

    def __init__(self, api: str, record: RequestRecord, answer: Answer | None = None) -> None:
        self.generate = api == API_GENERATE
        self.chat = api == API_CHAT
        self.texts = record.chunk_texts
        self.rec = record
        self.tail = bytearray()  # an incomplete last line (grows in place: no copy per read)
        self.text_len = 0
        self.last_tokens = 0
        self.counts_complete = True  # every output-bearing chunk carried a server count
        self.done = False
        self.finished = False  # a finish reason came (the stream may end without [DONE])
        self.times = record.chunk_times
        self.tokens = record.chunk_tokens
        self.answer = answer  # kept for a conversation's next turn (no fast path then)

    def feed(self, data: bytes | bytearray, t: float) -> None:
        """Decode the body bytes of one read, which returned at ``t`` (also the record's
        ``t_end``: the time of the last body bytes seen)."""
        self.rec.t_end = t
        if self.done:  # nothing after [DONE] matters
            return
        if self.tail:
            end = data.find(b"\n")
            if end < 0:
                self._hold(data)
                return  # the line goes on
            if len(self.tail) + end > MAX_SSE_LINE_BYTES:
                raise LineTooLong(f"{len(self.tail) + end} bytes")
            self.tail += data
            lines: list[bytes] | list[bytearray] = self.tail.split(b"\n")
            self.tail = bytearray()  # frees a long line's bytes before its lines are decoded
        elif (
            self.generate
            and self.answer is None
            and data[:6] == b"data: "
            and data[-2:] == b"\n\n"
            and data.find(b"\n") == len(data) - 2
            and self._generate_meta(data, 6, len(data) - 2, t)
        ):
            return  # the usual read: exactly one complete /generate event
        else:
            lines = data.split(b"\n")
        rest = lines.pop()  # an incomplete last line (empty when data ends with a newline)
        if rest:
            self._hold(rest)
        for line in lines:
            if line[:5] != b"data:":
                continue  # blank separators, comments (':'), event:/id:/retry: fields
            payload = line[5:].strip()
            if payload == b"[DONE]":
                self.done = True
                return
            if self.generate and self.answer is None and self._generate_meta(payload, 0, len(payload), t):
                continue
            try:
                obj = orjson.loads(payload)
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"{exc}: {payload[:200].decode('utf-8', 'replace')!r}") from None
            if type(obj) is not dict:
                raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
            if self.generate:
                self._generate(obj, t)
            else:
                self._completions(obj, t)

    def finish(self, t: float) -> None:
        """The body ended at ``t``: decode a last line without a trailing newline (some servers
        end without one)."""
        if self.tail.strip():
            tail, self.tail = self.tail, bytearray()
            self.feed(tail + b"\n", t)

    def close(self) -> None:
        """Drop the per-chunk counts unless every output chunk carried one, and say where the
        counts came from (the tokenizer may count the kept chunk texts later)."""
        rec = self.rec
        if not self.counts_complete or len(rec.chunk_tokens) != len(rec.chunk_times):
            rec.chunk_tokens.clear()
            rec.token_source = TOKENS_ONE_PER_CHUNK
        else:
            rec.token_source = TOKENS_SERVER
            rec.chunk_texts.clear()  # the server counted: nothing left to count

    def _hold(self, data: bytes | bytearray) -> None:
        """Add ``data`` to the incomplete last line, up to the line cap."""
        size = len(self.tail) + len(data)
        if size > MAX_SSE_LINE_BYTES:
            raise LineTooLong(f"no newline in its first {size} bytes")
        self.tail += data

    def _generate_meta(self, data: bytes | bytearray, start: int, stop: int, t: float) -> bool:
        """Fast path for SGLang's ``/generate`` events (``data[start:stop]``), whose cumulative
        ``text`` and ``output_ids`` grow with every token: when the object ends with its
        ``meta_info``, decode only that (the counts we need) and check the outer object's
        framing. False when the event is not of that shape (then it is decoded whole)."""
        if data[start : start + 1] != b"{" or data[stop - 1 : stop] != b"}":
            return False
        k = data.rfind(b',"meta_info":', start, stop)
        if k < 0:
            return False
        try:
            meta = orjson.loads(data[k + 13 : stop - 1])
        except orjson.JSONDecodeError:
            return False
        if type(meta) is not dict:
            return False
        if type(meta.get("completion_tokens")) is not int:
            return False
        ct = self._meta_info(meta)
        rec = self.rec
        if ct is not None and ct > self.last_tokens:
            if rec.t_first_token is None:
                rec.t_first_token = t
            self.times.append(t)
            self.tokens.append(ct)
            self.last_tokens = ct
        return True

    def _meta_info(self, meta: dict[str, Any]) -> int | None:
        """Record a ``/generate`` event's ``meta_info`` (server token counts; an ``abort`` finish
        reason raises); the completion token count, when it has one."""
        rec = self.rec
        ct = meta.get("completion_tokens")
        if type(ct) is int:
            rec.completion_tokens = ct
        else:
            ct = None
        pt = meta.get("prompt_tokens")
        if type(pt) is int:
            rec.prompt_tokens = pt
        cached = meta.get("cached_tokens")
        if type(cached) is int:
            rec.cached_tokens = cached
        finish = meta.get("finish_reason")
        if finish:
            self.finished = True
            if type(finish) is dict and finish.get("type") == "abort":
                self._abort(finish)
            self._server_times(meta)
        return ct

    def _server_times(self, meta: dict[str, Any]) -> None:
        """The answering server's own times of the request, from the final event's
        ``meta_info`` (SGLang with ``--enable-metrics``)."""
        first = meta.get("first_token_latency")
        if type(first) is float:
            self.rec.server_ttft = first
            received, entered = meta.get("request_received_ts"), meta.get("forward_entry_time")
            if type(received) is float and type(entered) is float:
                self.rec.server_before_forward = entered - received

    def _error(self, obj: dict[str, Any]) -> None:
        err = obj.get("error")
        if err:
            if isinstance(err, dict):
                code = err.get("code")
                if isinstance(code, int):
                    self.rec.status = code
                raise InBandError(str(err.get("message", err)))
            raise InBandError(str(err))

    def _abort(self, finish: dict[str, Any]) -> None:
        """SGLang ends a request it gave up on (a failed KV transfer, a request without a
        bootstrap room) with ``finish_reason: {"type": "abort", "message", "status_code"}``."""
        code = finish.get("status_code")
        if isinstance(code, int):
            self.rec.status = code
        raise InBandError(f"request aborted by the server: {finish.get('message') or finish}")

    def _generate(self, obj: dict[str, Any], t: float) -> None:
        if "error" in obj:
            self._error(obj)
        meta = obj.get("meta_info")
        text = obj.get("text", "")
        if not isinstance(text, str):
            raise ValueError("'text' is not a string")
        tokens = self._meta_info(meta) if type(meta) is dict else None
        if self.answer is not None:
            self.answer.add_ids(obj.get("output_ids"), tokens)
        if tokens is not None:
            if tokens > self.last_tokens:
                self._chunk(t, tokens)
                self.last_tokens = tokens
        elif len(text) > self.text_len:
            self._chunk(t, None)
        if len(text) > self.text_len:
            self.text_len = len(text)

    def _completions(self, obj: dict[str, Any], t: float) -> None:
        if "error" in obj:
            self._error(obj)
        choices = obj.get("choices") or []
        if type(choices) is not list:
            raise ValueError("'choices' is not a list")
        text = ""
        for choice in choices:
            if type(choice) is dict:
                if choice.get("finish_reason"):
                    self.finished = True
                if self.chat:
                    d = choice.get("delta")
                    piece = d.get("content") if type(d) is dict else None
                else:
                    piece = choice.get("text")
                if piece and type(piece) is str:
                    text = piece if not text else text + piece
        tokens = None
        usage = obj.get("usage")
        if type(usage) is dict:
            ct = usage.get("completion_tokens")
            if type(ct) is int:
                tokens = ct
                self.rec.completion_tokens = ct
            pt = usage.get("prompt_tokens")
            if type(pt) is int:
                self.rec.prompt_tokens = pt
            details = usage.get("prompt_tokens_details")
            if type(details) is dict and type(details.get("cached_tokens")) is int:
                self.rec.cached_tokens = details["cached_tokens"]
        grew = tokens is not None and tokens > self.last_tokens
        # a usage-only chunk (no choices) reports the total but carries no output; so does a
        # text-less finish chunk with the first count of a stream whose chunks had none (a
        # server without continuous usage that puts the total on its last choice chunk)
        if choices and (text or (grew and self.counts_complete)):
            self._chunk(t, tokens)
            self.texts.append(text)
        if self.answer is not None and text:
            self.answer.text += text
        if tokens is not None and tokens > self.last_tokens:
            self.last_tokens = tokens

    def _chunk(self, t: float, tokens: int | None) -> None:
        rec = self.rec
        if rec.t_first_token is None:
            rec.t_first_token = t
        self.times.append(t)
        if tokens is None:
            self.counts_complete = False
        else:
            self.tokens.append(tokens)


def ended_stream_failure(stream: SSEStream, url: str) -> tuple[str, str] | None:
    """The kind and message a stream whose body ended cleanly fails with, if it does: no
    ``[DONE]``, output without a server count, counts that contradict the stream, no output."""
    record = stream.rec
    if not stream.done and not stream.finished:
        return INCOMPLETE_STREAM, (
            f"stream from {url} ended without 'data: [DONE]' or a finish reason after "
            f"{len(record.chunk_times)} output chunks"
        )
    if record.t_first_token is not None and record.completion_tokens is None:
        what = "meta_info.completion_tokens" if stream.generate else "usage.completion_tokens"
        return MALFORMED_STREAM, (
            f"stream from {url} carried output but no {what}; token counts must come from the server"
        )
    contradiction = _count_contradiction(stream)
    if contradiction is not None:
        return MALFORMED_STREAM, (f"stream from {url} has token counts that contradict {contradiction}")
    if record.t_first_token is None or not record.completion_tokens:
        return NO_TOKENS, (
            f"stream from {url} finished with no output tokens "
            f"(server-reported completion_tokens={record.completion_tokens})"
        )
    return None


def _count_contradiction(stream: SSEStream) -> str | None:
    """How the server's final token count contradicts what the stream showed, if it does: a
    count below an earlier one, or fewer tokens than output-bearing chunks (each carries one at
    least)."""
    final = stream.rec.completion_tokens
    if final is None:
        return None
    if stream.last_tokens > final:
        return f"each other (completion_tokens {stream.last_tokens}, then {final})"
    chunks = len(stream.rec.chunk_times)
    if chunks > final:
        return f"the output: {chunks} output chunks but completion_tokens={final}"
    return None
