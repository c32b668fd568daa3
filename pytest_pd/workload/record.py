"""What happened to one request: :class:`RequestRecord` and the kinds of failure it can carry."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

HTTP_STATUS = "http_status"
TIMEOUT = "timeout"
CONNECTION = "connection"
DROPPED_CONNECTION = "dropped_connection"
MALFORMED_STREAM = "malformed_stream"
NO_TOKENS = "no_tokens"
INCOMPLETE_STREAM = "incomplete_stream"
ABORTED = "aborted"
ERROR_KINDS = (
    HTTP_STATUS,
    TIMEOUT,
    CONNECTION,
    DROPPED_CONNECTION,
    MALFORMED_STREAM,
    NO_TOKENS,
    INCOMPLETE_STREAM,
    ABORTED,
)
"""http_status: non-2xx answer, an error event in the stream, a stream SGLang ended with an
``abort`` finish reason, or a 2xx JSON error object instead of a stream; timeout: no complete
response within the request timeout; connection: could not connect / send, or the connection failed
before the response headers were complete; dropped_connection: the body was cut (connection reset
or closed mid-chunk, or its framing broken); malformed_stream: a data line that is not a JSON
object, an SSE line over the client's cap (``sse.MAX_SSE_LINE_BYTES``), a 2xx answer that is not an
event stream, output without a server token count, or server token counts that contradict each
other or the output chunks streamed; no_tokens: the stream finished without output;
incomplete_stream: the body ended cleanly but without ``data: [DONE]`` or a finish reason;
aborted: still in flight when the run was stopped (the caller's ``abort`` said why, e.g. a server
process died)."""

TOKENS_SERVER = "server per chunk"
TOKENS_TOKENIZER = "tokenizer"
TOKENS_ONE_PER_CHUNK = "one per chunk"
TOKEN_COUNT_SOURCES = (TOKENS_SERVER, TOKENS_TOKENIZER, TOKENS_ONE_PER_CHUNK)
"""Where a request's per-chunk token counts (``chunk_tokens``) came from: the server's cumulative
count on every chunk (``meta_info`` / continuous ``usage``), the run's tokenizer over the chunks'
texts (after the run), or nowhere (each chunk counts as one token gap in the ITL)."""


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
    token_source: str = ""
    """One of :data:`TOKEN_COUNT_SOURCES` once the stream is decoded ("" before)."""
    chunk_texts: list[str] = field(default_factory=list)
    # the output text of each output chunk (OpenAI APIs), parallel to chunk_times, kept until the
    # tokenizer counted them after the run; never stored (RunResult.to_dict leaves it out)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error_kind: str | None = None
    error: str = ""
    status: int | None = None
    cached_tokens: int | None = None
    rid: str | None = None
    # the answering server's own timing of this request, where its response carries it (SGLang's
    # meta_info with --enable-metrics; through a PD router, the decode server's): its time to
    # first token (first_token_latency) and from its receipt of the request to its first forward
    # batch (forward_entry_time - request_received_ts: on a PD decode the whole prefill side and
    # the KV hand-off, on a unified server its queue), seconds
    server_ttft: float | None = None
    server_before_forward: float | None = None

    @property
    def ok(self) -> bool:
        return self.error_kind is None

    def fail(self, kind: str, message: str, *, t: float | None = None) -> None:
        self.error_kind = kind
        self.error = message
        self.t_end = time.perf_counter() if t is None else t

    def to_dict(self, *, texts: bool = True) -> dict[str, Any]:
        d = asdict(self)
        if not texts:
            del d["chunk_texts"]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RequestRecord:
        return cls(**data)
