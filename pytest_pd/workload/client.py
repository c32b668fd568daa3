"""aiohttp streaming client for one request: SGLang ``/generate`` or OpenAI ``/v1/completions``.

Hot path, per request: the body is serialized once with orjson; the connection's protocol
(:class:`StampingResponseHandler`) takes ``perf_counter()`` the moment the event loop reads the
socket, takes the new body bytes out of the HTTP chunked framing (itself once the body streams,
see :class:`_Chunks`; through aiohttp's parser before that) and hands them straight to the
request's SSE decoder (:class:`SSEStream`) in the same callback — before any parsing happens the
time is taken, no task wakes up per chunk, and the whole response is never buffered; bytes that
came before the request's task attached its decoder keep the time they were read. Only then are complete
``data:`` lines decoded with orjson (for SGLang's growing cumulative ``/generate`` events, only
their ``meta_info``). Token counts come from the server (``meta_info`` / ``usage``), never from
counting events. Python 3.10 / an aiohttp without the protocol hook fall back to ``readany()``.
"""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
import orjson
from aiohttp import ClientPayloadError
from aiohttp.client_proto import ResponseHandler

from .prompts import API_GENERATE, Prompt, WorkloadError

# error kinds a RequestRecord can carry
HTTP_STATUS = "http_status"
TIMEOUT = "timeout"
CONNECTION = "connection"
DROPPED_CONNECTION = "dropped_connection"
MALFORMED_STREAM = "malformed_stream"
NO_TOKENS = "no_tokens"
INCOMPLETE_STREAM = "incomplete_stream"
ABORTED = "aborted"
ERROR_KINDS = (HTTP_STATUS, TIMEOUT, CONNECTION, DROPPED_CONNECTION, MALFORMED_STREAM, NO_TOKENS,
               INCOMPLETE_STREAM, ABORTED)
"""http_status: non-2xx answer, an error event in the stream, a stream SGLang ended with an
``abort`` finish reason, or a 2xx JSON error object instead of a stream; timeout: no complete
response within the request timeout; connection: could not connect / send, or the connection failed
before the response headers were complete; dropped_connection: the body was cut (connection reset
or closed mid-chunk); malformed_stream: a data line that is not a JSON object, an SSE line over
:data:`MAX_SSE_LINE_BYTES`, a 2xx answer that is not an event stream, output without a server token
count, or server token counts that contradict each other or the output chunks streamed;
no_tokens: the stream finished without output;
incomplete_stream: the body ended cleanly but without ``data: [DONE]``; aborted: still in flight when
the run was stopped (the caller's ``abort`` said why, e.g. a server process died)."""

BODY_EXCERPT_CHARS = 500
READ_BUFSIZE = 1 << 22  # 4 MiB flow-control window per response: long cumulative SSE lines fit
MAX_SSE_LINE_BYTES = 8 << 20
"""Longest SSE line the client holds while waiting for its end; a longer one fails the request
(malformed_stream) instead of growing without bound. SGLang's last cumulative ``/generate`` event
of a 128k-token output is ~1.5 MB (ids and text); decoding a line costs ~4x its size."""
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "text/event-stream"}
_DUMPS_OPTS = orjson.OPT_SERIALIZE_NUMPY


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
    cached_tokens: int | None = None
    rid: str | None = None

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


def request_payload(api: str, prompt: Prompt, *, max_tokens: int, model: str | None,
                    rid: str | None = None) -> dict[str, Any]:
    """The JSON body (token ids may stay a numpy array: :func:`encode_body` serializes it)."""
    if api == API_GENERATE:
        body: dict[str, Any] = {
            "input_ids": prompt.token_ids,
            "sampling_params": {
                "max_new_tokens": max_tokens,
                "ignore_eos": True,
                "temperature": 0,
            },
            "stream": True,
        }
    else:
        body = {
            "model": model,
            "prompt": prompt.text if prompt.text is not None else prompt.token_ids,
            "max_tokens": max_tokens,
            "ignore_eos": True,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    if rid is not None:
        body["rid"] = rid
    return body


def encode_body(payload: dict[str, Any]) -> bytes:
    if not isinstance(payload.get("input_ids", payload.get("prompt")), (str, list)):
        key = "input_ids" if "input_ids" in payload else "prompt"
        ids = payload[key]
        if not hasattr(ids, "dtype"):  # tuples and other sequences
            payload = {**payload, key: [int(t) for t in ids]}
    return orjson.dumps(payload, option=_DUMPS_OPTS)


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
            data = orjson.loads(body)
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


_NO_TIMEOUT = aiohttp.ClientTimeout(total=None)


class StampingResponseHandler(ResponseHandler):
    """aiohttp's connection protocol that hands streamed bodies to an SSE decoder as they arrive.

    ``data_received`` runs the moment the event loop reads the socket: the time is taken first,
    aiohttp parses the HTTP framing into the response's body stream, and then (when a
    :class:`_Sink` is attached) the new body bytes are taken out of that stream with
    ``read_nowait()`` and decoded, stamped with that time; once a plain chunked body streams
    into a sink, :class:`_Chunks` takes the chunks out itself. No task wakes up per chunk; the
    request's task only waits for the end of the body. Timestamps stay exact when the loop is
    busy with 1000+ streams, and a chunk costs one callback instead of a task switch.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.pd_sink: _Sink | None = None
        # (time, body bytes received so far) of each read before the request's task attached
        # its sink: lets bytes that came with the headers keep the time they were read
        self.pd_early: list[tuple[float, int]] = []
        self.pd_fast_resume = hasattr(self, "_reading_paused") and hasattr(self, "_buffer_paused")
        self.pd_chunks: _Chunks | None = _Chunks()

    def resume_reading(self, resume_parser: bool = True) -> None:
        # aiohttp calls this after every read of the body (read_nowait); while nothing is
        # paused and the body is plain (no decompressor holding data back), it has nothing to do
        sink = self.pd_sink
        if (sink is not None and sink.plain and self.pd_fast_resume and not self._reading_paused
                and not self._buffer_paused):
            return
        super().resume_reading(resume_parser)

    def data_received(self, data: bytes) -> None:
        t = time.perf_counter()
        sink = self.pd_sink
        chunks = self.pd_chunks
        if chunks is not None and data:
            if sink is not None and (chunks.taken or (sink.direct and chunks.head is None
                                                      and not chunks.buf and not chunks.left)):
                # the body streams into a sink and this read starts at a chunk boundary (or
                # the chunks are ours already): take them out here, from now on
                chunks.taken = True
                last = chunks.frames(data, sink, t)
                if last is not None:  # the last chunk: aiohttp's parser ends the message
                    self.pd_chunks = None
                    super().data_received(last)
                elif not chunks.ok:
                    self.pd_chunks = None
                    sink.fail(ClientPayloadError("malformed chunked transfer encoding"))
                return
            if chunks.frames(data, None, t) is not None or not chunks.ok:
                self.pd_chunks = None  # the message ended before a sink came, or odd framing
        super().data_received(data)
        if sink is not None:
            sink.pump(t)
        elif data:
            payload = getattr(self, "_payload", None)  # the body stream aiohttp feeds
            if payload is not None:
                self.pd_early.append((t, payload.total_bytes))


class _Chunks:
    """Follows the HTTP/1.1 chunked framing of a connection's first response, from its first
    byte, so that once its body streams into a sink and a read starts at a chunk boundary, the
    protocol can take the chunks out itself: aiohttp's parser and body stream cost several
    Python calls per read, and a streamed token is one read. The last chunk goes back to
    aiohttp's parser (which then ends the message as usual); any framing it does not expect
    turns it off, leaving everything to aiohttp. A chunk that comes in parts is fed as it comes
    (a multi-megabyte chunk is never held here, whatever its size)."""

    __slots__ = ("head", "buf", "left", "ok", "taken")

    def __init__(self) -> None:
        self.head: bytes | None = b""  # status line and headers until their end; then None
        self.buf = b""  # an incomplete chunk-size line
        self.left = 0  # bytes still due of a chunk that came in part: its payload, then CRLF
        self.ok = True
        self.taken = False  # the protocol decodes the chunks (aiohttp's parser no longer sees them)

    def frames(self, data: bytes, sink: _Sink | None, t: float) -> bytes | None:
        """Walk ``data`` through the framing; with ``sink``, feed it each chunk's payload.
        Returns the bytes from the last chunk on, once they come (then the body is done)."""
        if self.head is not None:
            head = self.head + data
            k = head.find(b"\r\n\r\n")
            if k < 0:
                self.head = head
                self.ok = len(head) < MAX_HEAD_BYTES
                return None
            self.head = None
            data = head[k + 4:]
        if self.left:
            data = self._rest_of_chunk(data, sink, t)
            if self.left or not self.ok:
                return None
        buf = self.buf + data if self.buf else data
        pos, n = 0, len(buf)
        while True:
            i = buf.find(b"\r\n", pos)
            if i < 0:
                break
            size_hex = buf[pos:i].split(b";", 1)[0]
            if not size_hex or size_hex.strip(_HEX):
                self.ok = False
                return None
            size = int(size_hex, 16)
            if size == 0:
                self.buf = b""
                return buf[pos:]
            end = i + 2 + size
            if end + 2 > n:  # the chunk goes on in the next reads
                self.buf = b""
                self.left = size + 2
                self._rest_of_chunk(buf[i + 2:], sink, t)
                return None
            if buf[end:end + 2] != b"\r\n":
                self.ok = False
                return None
            if sink is not None:
                sink.feed(buf[i + 2:end], t)
            pos = end + 2
        self.buf = buf[pos:]
        self.ok = len(self.buf) < MAX_HEAD_BYTES
        return None

    def _rest_of_chunk(self, data: bytes, sink: _Sink | None, t: float) -> bytes:
        """Take the next ``left`` bytes of the current chunk from ``data`` (feeding its payload
        to ``sink``, checking its closing CRLF); returns the bytes after them."""
        left = self.left
        take = min(left, len(data))
        payload_end = max(0, min(take, left - 2))
        if payload_end and sink is not None:
            sink.feed(data[:payload_end], t)
        crlf = data[payload_end:take]  # the part of the chunk's closing CRLF in this read
        if crlf and crlf != b"\r\n"[payload_end - left + 2:take - left + 2]:
            self.ok = False
        self.left = left - take
        return data[take:]


_HEX = b"0123456789abcdefABCDEF"
MAX_HEAD_BYTES = 1 << 16


class _Sink:
    """Moves one response's body bytes from aiohttp's stream into its :class:`SSEStream`."""

    __slots__ = ("content", "stream", "rec", "failed", "plain", "direct")

    def __init__(self, content: Any, stream: SSEStream, rec: RequestRecord, plain: bool,
                 direct: bool) -> None:
        self.content = content
        self.stream = stream
        self.rec = rec
        self.failed = False
        self.plain = plain
        self.direct = direct  # a plain chunked body: the protocol may decode its chunks itself

    def feed(self, data: bytes, t: float) -> None:
        """Decode body bytes the protocol took out of the chunks itself."""
        if self.failed:
            return
        self.rec.t_end = t
        try:
            self.stream.feed(data, t)
        except Exception as exc:  # noqa: BLE001 - never raise into aiohttp's protocol
            self.fail(exc)

    def pump(self, t: float, early: list[tuple[float, int]] | None = None) -> None:
        """Decode the body bytes waiting in the stream, stamped ``t``; with ``early`` (the
        reads before this sink was attached), each read's bytes with that read's time."""
        if self.failed:
            return
        content = self.content
        try:
            data = content.read_nowait()
        except Exception:  # noqa: BLE001 - the stream's error reaches the task via wait_eof
            return
        if not data:
            return
        try:
            if early:
                base = content.total_bytes - len(data)  # stream offset of data[0]
                for te, total in early:
                    end = total - base
                    if end > 0:
                        self.rec.t_end = te
                        self.stream.feed(data[:end], te)
                        data, base = data[end:], total
            if data:
                self.rec.t_end = t
                self.stream.feed(data, t)
        except Exception as exc:  # noqa: BLE001 - never raise into aiohttp's protocol
            self.fail(exc)

    def fail(self, exc: Exception) -> None:
        """Fail the body instead; the request's task re-raises it from wait_eof()."""
        self.failed = True
        if not isinstance(exc, (ValueError, _InBandError, aiohttp.ClientPayloadError)):
            exc = ValueError(f"{type(exc).__name__}: {exc}")
        self.content.set_exception(exc)


class StampingConnector(aiohttp.TCPConnector):
    """TCPConnector whose connections use :class:`StampingResponseHandler` (when this aiohttp
    builds protocols through ``_factory``; otherwise plain ones, stamped at read time)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if hasattr(self, "_factory"):
            self._factory = functools.partial(StampingResponseHandler, loop=self._loop)


def _deadline(timeout_s: float) -> Any:
    """One timer for the whole request (aiohttp's own total timeout re-arms a timer context
    around every read, a measurable cost per streamed chunk)."""
    if hasattr(asyncio, "timeout"):  # Python >= 3.11
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


class _InBandError(Exception):
    pass


class _LineTooLong(ValueError):
    """An SSE line over :data:`MAX_SSE_LINE_BYTES`; the message says how long it got."""


class SSEStream:
    """Incremental SSE decoder for one response: feed it raw body bytes with their arrival time.

    Splits complete lines (a partial line waits for the next read; it is stamped with the time
    the read that completed it returned), decodes ``data:`` lines with orjson and records output
    chunks, server token counts and ``[DONE]``. Raises ``ValueError`` for a malformed line (and
    its :class:`_LineTooLong` for a line over :data:`MAX_SSE_LINE_BYTES`) and :class:`_InBandError`
    for an error event.
    """

    __slots__ = ("generate", "rec", "tail", "text_len", "last_tokens", "counts_complete", "done",
                 "times", "tokens")

    def __init__(self, api: str, record: RequestRecord) -> None:
        self.generate = api == API_GENERATE
        self.rec = record
        self.tail = bytearray()  # an incomplete last line (grows in place: no copy per read)
        self.text_len = 0
        self.last_tokens = 0
        self.counts_complete = True  # every output-bearing chunk carried a server count
        self.done = False
        self.times = record.chunk_times
        self.tokens = record.chunk_tokens

    def feed(self, data: bytes | bytearray, t: float) -> None:
        if self.done:  # nothing after [DONE] matters
            return
        if self.tail:
            end = data.find(b"\n")
            if end < 0:
                self._hold(data)
                return  # the line goes on
            if len(self.tail) + end > MAX_SSE_LINE_BYTES:
                raise _LineTooLong(f"{len(self.tail) + end} bytes")
            self.tail += data
            lines = self.tail.split(b"\n")
            self.tail = bytearray()  # frees a long line's bytes before its lines are decoded
        elif (self.generate and data[:6] == b"data: " and data[-2:] == b"\n\n"
              and data.find(b"\n") == len(data) - 2
              and self._generate_meta(data, 6, len(data) - 2, t)):
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
            if self.generate and self._generate_meta(payload, 0, len(payload), t):
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

    def _hold(self, data: bytes | bytearray) -> None:
        """Add ``data`` to the incomplete last line, up to the line cap."""
        size = len(self.tail) + len(data)
        if size > MAX_SSE_LINE_BYTES:
            raise _LineTooLong(f"no newline in its first {size} bytes")
        self.tail += data

    def _generate_meta(self, data: bytes | bytearray, start: int, stop: int, t: float) -> bool:
        """Fast path for SGLang's ``/generate`` events (``data[start:stop]``), whose cumulative
        ``text`` and ``output_ids`` grow with every token: when the object ends with its
        ``meta_info``, decode only that (the counts we need) and check the outer object's
        framing. False when the event is not of that shape (then it is decoded whole)."""
        if data[start:start + 1] != b"{" or data[stop - 1:stop] != b"}":
            return False
        k = data.rfind(b',"meta_info":', start, stop)
        if k < 0:
            return False
        try:
            meta = orjson.loads(data[k + 13:stop - 1])
        except orjson.JSONDecodeError:
            return False
        if type(meta) is not dict:
            return False
        ct = meta.get("completion_tokens")
        if type(ct) is not int:
            return False
        rec = self.rec
        rec.completion_tokens = ct
        pt = meta.get("prompt_tokens")
        if type(pt) is int:
            rec.prompt_tokens = pt
        cached = meta.get("cached_tokens")
        if type(cached) is int:
            rec.cached_tokens = cached
        finish = meta.get("finish_reason")
        if type(finish) is dict and finish.get("type") == "abort":
            self._abort(finish)
        if ct > self.last_tokens:
            if rec.t_first_token is None:
                rec.t_first_token = t
            self.times.append(t)
            self.tokens.append(ct)
            self.last_tokens = ct
        return True

    def finish(self) -> None:
        """Process a last line without a trailing newline (some servers end without one)."""
        if self.tail.strip():
            tail, self.tail = self.tail, bytearray()
            self.feed(tail + b"\n", self.rec.t_end or time.perf_counter())

    def _error(self, obj: dict[str, Any]) -> None:
        err = obj.get("error")
        if err:
            if isinstance(err, dict):
                code = err.get("code")
                if isinstance(code, int):
                    self.rec.status = code
                raise _InBandError(str(err.get("message", err)))
            raise _InBandError(str(err))

    def _abort(self, finish: dict[str, Any]) -> None:
        """SGLang ends a request it gave up on (a failed KV transfer, a request without a
        bootstrap room) with ``finish_reason: {"type": "abort", "message", "status_code"}``."""
        code = finish.get("status_code")
        if isinstance(code, int):
            self.rec.status = code
        raise _InBandError(f"request aborted by the server: {finish.get('message') or finish}")

    def _generate(self, obj: dict[str, Any], t: float) -> None:
        if "error" in obj:
            self._error(obj)
        meta = obj.get("meta_info")
        text = obj.get("text", "")
        if not isinstance(text, str):
            raise ValueError("'text' is not a string")
        tokens = None
        if type(meta) is dict:
            ct = meta.get("completion_tokens")
            if type(ct) is int:
                tokens = ct
                self.rec.completion_tokens = ct
            pt = meta.get("prompt_tokens")
            if type(pt) is int:
                self.rec.prompt_tokens = pt
            cached = meta.get("cached_tokens")
            if type(cached) is int:
                self.rec.cached_tokens = cached
            finish = meta.get("finish_reason")
            if type(finish) is dict and finish.get("type") == "abort":
                self._abort(finish)
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
        delta = False
        for choice in choices:
            if type(choice) is dict and choice.get("text"):
                delta = True
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
        # a usage-only chunk (no choices) reports the total but carries no output
        if choices and (delta or grew):
            self._chunk(t, tokens)
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

    def close(self) -> None:
        rec = self.rec
        if not self.counts_complete or len(rec.chunk_tokens) != len(rec.chunk_times):
            rec.chunk_tokens.clear()


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
    body: bytes | None = None,
) -> RequestRecord:
    """Send one streaming request and fill ``record``. Never raises for request failures.

    ``record.t_start`` is set here unless the caller already set it (the runner sets it right
    after acquiring the concurrency slot). ``body`` is the serialized request when the caller
    prepared it.
    """
    url = endpoint_url(base_url, api)
    if body is None:
        body = encode_body(request_payload(api, prompt, max_tokens=max_tokens, model=model,
                                           rid=record.rid))
    stream = SSEStream(api, record)
    got_response = False
    if record.t_start is None:
        record.t_start = time.perf_counter()
    perf = time.perf_counter
    try:
        async with _deadline(timeout_s), session.post(url, data=body, headers=JSON_HEADERS,
                                                      timeout=_NO_TIMEOUT) as resp:
            got_response = True
            record.status = resp.status
            if resp.status // 100 != 2:
                raw = await resp.content.read(BODY_EXCERPT_CHARS * 4)
                text = raw.decode("utf-8", errors="replace")
                record.fail(HTTP_STATUS, f"HTTP {resp.status} from {url}: "
                            f"{text[:BODY_EXCERPT_CHARS]}")
                return record
            content_type = resp.headers.get("Content-Type", "")
            if content_type and not content_type.lower().startswith("text/event-stream"):
                raw = await resp.content.read(BODY_EXCERPT_CHARS * 4)
                _fail_not_a_stream(record, url, content_type, raw)
                return record
            content = resp.content
            conn = resp.connection
            proto = conn.protocol if conn is not None else None
            if isinstance(proto, StampingResponseHandler):
                plain = "Content-Encoding" not in resp.headers
                sink = _Sink(content, stream, record, plain, direct=plain and resp.headers.get(
                    "Transfer-Encoding", "").lower() == "chunked")
                proto.pd_sink = sink
                early, proto.pd_early = proto.pd_early, []
                try:
                    sink.pump(perf(), early)  # body bytes that came before the sink
                    while not content.is_eof():
                        if content.exception() is not None:
                            break
                        await content.wait_eof()
                    sink.pump(perf())
                finally:
                    proto.pd_sink = None
                    proto.pd_chunks = None  # a reused connection's next response: aiohttp's
                exc = content.exception()
                if exc is not None:
                    raise exc
            else:  # a protocol we cannot hook: read as bytes arrive, stamp after each read
                read = content.readany
                feed = stream.feed
                while True:
                    data = await read()
                    t = perf()
                    if not data:
                        break
                    record.t_end = t
                    feed(data, t)
            stream.finish()
    except asyncio.TimeoutError:
        progress = (f"{len(record.chunk_times)} output chunks received" if got_response
                    else "no response headers received")
        record.fail(TIMEOUT, f"no complete response from {url} within {timeout_s:g} s "
                    f"({progress})")
        return record
    except _InBandError as exc:
        record.fail(HTTP_STATUS, f"error event in stream from {url}: "
                    f"{str(exc)[:BODY_EXCERPT_CHARS]}", t=record.t_end)
        return record
    except aiohttp.ClientPayloadError as exc:
        record.fail(DROPPED_CONNECTION, f"response body from {url} was cut: {exc}")
        return record
    except _LineTooLong as exc:
        record.fail(MALFORMED_STREAM, f"stream from {url} sent an SSE line over the client's "
                    f"{MAX_SSE_LINE_BYTES >> 20} MiB cap ({exc}) after {len(record.chunk_times)} "
                    "output chunks", t=record.t_end)
        return record
    except (ValueError, TypeError, UnicodeDecodeError) as exc:  # orjson.JSONDecodeError too
        record.fail(MALFORMED_STREAM, f"unparseable data line from {url}: {exc}", t=record.t_end)
        return record
    except (aiohttp.ClientError, OSError) as exc:
        kind = DROPPED_CONNECTION if got_response else CONNECTION
        record.fail(kind, f"{type(exc).__name__} talking to {url}: {exc}")
        return record
    finally:
        stream.close()
        if record.t_end is None:
            record.t_end = time.perf_counter()

    t_end = record.t_end
    if not stream.done:
        record.fail(INCOMPLETE_STREAM, f"stream from {url} ended without 'data: [DONE]' after "
                    f"{len(record.chunk_times)} output chunks", t=t_end)
    elif record.t_first_token is not None and record.completion_tokens is None:
        what = "meta_info.completion_tokens" if api == API_GENERATE else "usage.completion_tokens"
        record.fail(MALFORMED_STREAM, f"stream from {url} carried output but no {what}; token "
                    "counts must come from the server", t=t_end)
    elif (contradiction := _count_contradiction(stream, record)) is not None:
        record.fail(MALFORMED_STREAM, f"stream from {url} has token counts that contradict "
                    f"{contradiction}", t=t_end)
    elif record.t_first_token is None or not record.completion_tokens:
        record.fail(NO_TOKENS, f"stream from {url} finished with no output tokens "
                    f"(server-reported completion_tokens={record.completion_tokens})", t=t_end)
    return record


def _count_contradiction(stream: SSEStream, record: RequestRecord) -> str | None:
    """How the server's final token count contradicts what the stream showed, if it does: a
    count below an earlier one, or fewer tokens than output-bearing chunks (each carries one at
    least)."""
    final = record.completion_tokens
    if final is None:
        return None
    if stream.last_tokens > final:
        return f"each other (completion_tokens {stream.last_tokens}, then {final})"
    if len(record.chunk_times) > final:
        return (f"the output: {len(record.chunk_times)} output chunks but "
                f"completion_tokens={final}")
    return None


def _fail_not_a_stream(record: RequestRecord, url: str, content_type: str, raw: bytes) -> None:
    """A 2xx answer that is not an event stream: a JSON error object is the server's error
    (http_status, its ``code`` as the status); anything else, a malformed stream."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        obj = None
    err = obj.get("error") if type(obj) is dict else None
    http = f"HTTP {record.status} {content_type}"
    if err:
        message = err.get("message", err) if isinstance(err, dict) else err
        code = err.get("code") if isinstance(err, dict) else None
        if type(code) is int:
            record.status = code
        record.fail(HTTP_STATUS, f"{http} error from {url} instead of an event stream: "
                    f"{str(message)[:BODY_EXCERPT_CHARS]}")
        return
    text = raw.decode("utf-8", errors="replace")
    record.fail(MALFORMED_STREAM, f"{http} from {url}, not an event stream: "
                f"{text[:BODY_EXCERPT_CHARS]}")
