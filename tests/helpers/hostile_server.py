"""A raw asyncio HTTP/1.1 server that misbehaves on purpose, to test the streaming client.

It answers ``GET /v1/models``, ``POST /generate`` (SGLang) and ``POST /v1/completions`` (OpenAI)
and works at the byte level (partial headers, resets, chunks cut short, one byte per write), which
an aiohttp server cannot. The request's prompt picks the behaviour: a prompt from
:func:`prompt_for` starts with its case's token id (see :data:`CASES`); any other prompt gets a
well-behaved stream, so one run can mix hostile and normal requests.

Well-behaved streams look like SGLang 0.5's: chunked transfer encoding, one HTTP chunk per SSE
event, compact JSON (``meta_info`` last in ``/generate`` events, cumulative ``text`` and
``output_ids``), ``usage`` in a last choice-less chunk for ``/v1/completions``, then
``data: [DONE]``. Token ``k`` is the text ``"t{k} "``.

The module also runs one case's client in a child process and measures its memory there::

    python -m tests.helpers.hostile_server probe URL API CASE TIMEOUT_S OUT   # writes JSON to OUT
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_pd.workload import Prompt

GENERATE = "generate"
COMPLETIONS = "completions"
BOTH = (GENERATE, COMPLETIONS)
MODEL = "hostile-model"

CASE_TOKEN_BASE = 900_000  # prompt token ids from here on select a case; real ids are smaller
STEP_S = 0.005  # between well-behaved events
BYTE_GAP_S = 0.010  # between events written byte by byte
TOKENS_BEFORE_TROUBLE = 2
HUGE_LINE_BYTES = 50 * 2**20
BIG_EVENT_BYTES = 8 * 2**20  # over the client's SSE line cap
LONG_EVENT_BYTES = 3 * 2**20  # under it: ~ the last /generate event of a 256k-token output
WRITE_PIECE = 2**20
TRICKLE_GAP_S = 1.0
STOP_TIMEOUT_S = 5.0
EXTRA_TOKENS = 3
HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head>\n<body><h1>Sign in to "
    b"continue</h1><form action=/login method=post></form></body></html>\n"
)
JSON_ERROR = {
    "error": {
        "message": "The input (2058 tokens) is longer than the model's context length (2048 tokens).",
        "type": "BadRequestError",
        "code": 400,
    }
}
STREAM_ERROR = {
    "error": {
        "message": "Decode transfer failed for request rank=0: KVTransferError",
        "type": "InternalServerError",
        "code": 503,
        "retryable": True,
    }
}
ABORT_MESSAGE = "Decode transfer failed for request rank=0 req.rid='hostile': KVTransferError"
DONE = b"data: [DONE]\n\n"
LAST_CHUNK = b"0\r\n\r\n"


# -- the bytes of a stream -------------------------------------------------------------------


def sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def chunk(data: bytes) -> bytes:
    """One HTTP/1.1 chunk."""
    return b"%X\r\n" % len(data) + data + b"\r\n"


def head(content_type: str = "text/event-stream", *, length: int | None = None) -> bytes:
    """Status line and headers of a 200 answer: chunked unless ``length`` is given."""
    framing = b"Transfer-Encoding: chunked" if length is None else b"Content-Length: %d" % length
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: "
        + content_type.encode()
        + b"\r\n"
        + framing
        + b"\r\nConnection: close\r\n\r\n"
    )


def token_text(k: int) -> str:
    return f"t{k} "


def generate_event(
    k: int, n: int, prompt_tokens: int, *, reported: int | None = None, padding: str = ""
) -> bytes:
    """SGLang's ``/generate`` event after token ``k`` of ``n`` (``reported``: the count it
    claims; ``padding``: extra text, to make the line long)."""
    finish = {"type": "length", "length": n} if k == n else None
    return sse(
        {
            "text": "".join(token_text(i) for i in range(1, k + 1)) + padding,
            "output_ids": list(range(11, 11 + k)),
            "meta_info": {
                "id": "hostile",
                "finish_reason": finish,
                "prompt_tokens": prompt_tokens,
                "completion_tokens": k if reported is None else reported,
                "cached_tokens": 0,
            },
        }
    )


def completions_event(k: int, n: int, *, padding: str = "") -> bytes:
    return sse(
        {
            "id": "cmpl-hostile",
            "object": "text_completion",
            "created": 0,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "text": token_text(k) + padding,
                    "logprobs": None,
                    "finish_reason": "length" if k == n else None,
                    "matched_stop": None,
                }
            ],
            "usage": None,
        }
    )


def usage_event(prompt_tokens: int, completion_tokens: int) -> bytes:
    return sse(
        {
            "id": "cmpl-hostile",
            "object": "text_completion",
            "created": 0,
            "model": MODEL,
            "choices": [],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
    )


def token_event(api: str, k: int, n: int, prompt_tokens: int) -> bytes:
    if api == GENERATE:
        return generate_event(k, n, prompt_tokens)
    return completions_event(k, n)


def events(api: str, n: int, prompt_tokens: int) -> list[bytes]:
    """The SSE events of a well-behaved stream of ``n`` tokens, ``[DONE]`` included."""
    out = [token_event(api, k, n, prompt_tokens) for k in range(1, n + 1)]
    if api == COMPLETIONS:
        out.append(usage_event(prompt_tokens, n))
    return out + [DONE]


# -- one exchange ----------------------------------------------------------------------------


@dataclass
class Exchange:
    """One request the server read, and the connection to answer it on."""

    case: str
    api: str
    prompt_tokens: int
    max_tokens: int
    writer: asyncio.StreamWriter
    ignore_eos: bool = False  # the request asked for ignore_eos
    left: asyncio.Event = field(default_factory=asyncio.Event)  # the client closed
    # perf_counter just before the write of the newline ending each event's data line (a client
    # cannot have decoded the event earlier)
    event_ends: list[float] = field(default_factory=list)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def pause(self, seconds: float) -> None:
        """Sleep, or less if the client leaves."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.left.wait(), seconds)

    async def send_events(self, stream: list[bytes], gap_s: float = STEP_S) -> None:
        """Each event as its own HTTP chunk, ``gap_s`` apart."""
        for k, event in enumerate(stream):
            if k:
                await asyncio.sleep(gap_s)
            await self.send(chunk(event))

    async def send_bytewise(self, data: bytes, piece: int = 1) -> None:
        """``data`` in ``piece``-byte writes, the loop turning between them."""
        for i in range(0, len(data), piece):
            await self.send(data[i : i + piece])
            await asyncio.sleep(0)

    def no_delay(self) -> None:
        """Small writes leave at once (no Nagle coalescing)."""
        self.writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def first_tokens(self) -> None:
        """The headers and the first tokens of a well-behaved stream."""
        await self.send(head())
        await self.send_events(
            [
                token_event(self.api, k, self.max_tokens, self.prompt_tokens)
                for k in range(1, TOKENS_BEFORE_TROUBLE + 1)
            ]
        )

    def reset(self) -> None:
        """Close with a TCP RST instead of a FIN."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


# -- the cases -------------------------------------------------------------------------------

Behaviour = Callable[[Exchange], Awaitable[None]]


@dataclass(frozen=True)
class Case:
    name: str
    does: str  # what the server does, in words
    run: Behaviour
    apis: tuple[str, ...]
    token: int  # a prompt starting with this token id gets this case


CASES: dict[str, Case] = {}


def case(does: str, apis: tuple[str, ...] = BOTH) -> Callable[[Behaviour], Behaviour]:
    def register(run: Behaviour) -> Behaviour:
        name = run.__name__
        CASES[name] = Case(name, does, run, apis, CASE_TOKEN_BASE + len(CASES))
        return run

    return register


@case("streams a well-formed response")
async def ok(x: Exchange) -> None:
    await x.send(head())
    await x.send_events(events(x.api, x.max_tokens, x.prompt_tokens))
    await x.send(LAST_CHUNK)


@case(f"streams {TOKENS_BEFORE_TROUBLE} tokens, then nothing: no [DONE], connection kept open")
async def stall(x: Exchange) -> None:
    await x.first_tokens()
    await x.left.wait()


@case(
    f"streams {TOKENS_BEFORE_TROUBLE} tokens, then ends the body cleanly (last chunk, close) without [DONE]"
)
async def no_done_close(x: Exchange) -> None:
    await x.first_tokens()
    await x.send(LAST_CHUNK)


@case(
    f"sends one {HUGE_LINE_BYTES >> 20} MiB SSE line without a newline (one HTTP chunk), "
    "then keeps the connection open"
)
async def huge_line(x: Exchange) -> None:
    await x.send(head() + b"%X\r\n" % HUGE_LINE_BYTES + b"data: ")
    piece = b"a" * WRITE_PIECE
    for _ in range(HUGE_LINE_BYTES // WRITE_PIECE - 1):
        await x.send(piece)  # the chunk (and the line) never ends
    await x.left.wait()


async def send_with_long_first_event(x: Exchange, text_bytes: int) -> None:
    """A well-formed stream whose first event carries ``text_bytes`` more of text."""
    stream = events(x.api, x.max_tokens, x.prompt_tokens)
    padding = "x" * text_bytes
    stream[0] = (
        generate_event(1, x.max_tokens, x.prompt_tokens, padding=padding)
        if x.api == GENERATE
        else completions_event(1, x.max_tokens, padding=padding)
    )
    await x.send(head())
    await x.send_events(stream)
    await x.send(LAST_CHUNK)


@case(
    f"sends a valid-looking first event {BIG_EVENT_BYTES >> 20} MiB long (a huge text), then the "
    "rest of a well-formed stream"
)
async def big_event(x: Exchange) -> None:
    await send_with_long_first_event(x, BIG_EVENT_BYTES)


@case(f"sends a valid first event {LONG_EVENT_BYTES >> 20} MiB long, then the rest of a well-formed stream")
async def long_event(x: Exchange) -> None:
    await send_with_long_first_event(x, LONG_EVENT_BYTES)


@case("streams well-formed events whose text holds invalid UTF-8 bytes (0xff 0xfe)")
async def bad_utf8(x: Exchange) -> None:
    stream = [e.replace(b"t2 ", b"t2\xff\xfe") for e in events(x.api, x.max_tokens, x.prompt_tokens)]
    await x.send(head())
    await x.send_events(stream)
    await x.send(LAST_CHUNK)


@case("writes a well-formed response one byte per TCP write (headers, chunk framing, events)")
async def byte_writes(x: Exchange) -> None:
    x.no_delay()
    await x.send_bytewise(head())
    for event in events(x.api, x.max_tokens, x.prompt_tokens):
        await asyncio.sleep(BYTE_GAP_S)
        framed = chunk(event)
        line_end = len(framed) - 4  # framed ends with the data line's "\n", "\n", then CRLF
        await x.send_bytewise(framed[:line_end])
        x.event_ends.append(time.perf_counter())
        await x.send_bytewise(framed[line_end:])
    await x.send_bytewise(LAST_CHUNK)


@case("sends a well-formed stream with every body byte in its own HTTP chunk, one write each")
async def byte_chunks(x: Exchange) -> None:
    x.no_delay()
    await x.send(head())
    for event in events(x.api, x.max_tokens, x.prompt_tokens):
        await asyncio.sleep(BYTE_GAP_S)
        line_end = len(event) - 2  # the event ends with its data line's "\n", then "\n"
        await x.send_bytewise(
            b"".join(chunk(event[i : i + 1]) for i in range(line_end)), piece=6
        )  # "1\r\nX\r\n"
        x.event_ends.append(time.perf_counter())
        await x.send_bytewise(chunk(event[line_end : line_end + 1]) + chunk(event[-1:]), piece=6)
    await x.send(LAST_CHUNK)


@case("answers 200 with a text/html page (a proxy's sign-in page)")
async def html_page(x: Exchange) -> None:
    await x.send(head("text/html; charset=utf-8", length=len(HTML_PAGE)) + HTML_PAGE)


@case("answers 200 with a JSON error object as the whole body (application/json)")
async def json_error(x: Exchange) -> None:
    body = json.dumps(JSON_ERROR).encode()
    await x.send(head("application/json", length=len(body)) + body)


@case(f'streams {TOKENS_BEFORE_TROUBLE} tokens, then an error event (data: {{"error": {{...}}}}) and [DONE]')
async def error_event(x: Exchange) -> None:
    await x.first_tokens()
    await x.send_events([sse(STREAM_ERROR), DONE])
    await x.send(LAST_CHUNK)


@case(
    f"streams {TOKENS_BEFORE_TROUBLE} tokens, then SGLang's abort event (finish_reason type "
    "abort, compact JSON) and [DONE]",
    apis=(GENERATE,),
)
async def abort_event(x: Exchange) -> None:
    await x.first_tokens()
    abort = {
        "text": "",
        "output_ids": [],
        "meta_info": {
            "id": "hostile",
            "finish_reason": {
                "type": "abort",
                "message": ABORT_MESSAGE,
                "status_code": 500,
                "err_type": None,
            },
            "prompt_tokens": x.prompt_tokens,
            "completion_tokens": 0,
            "cached_tokens": 0,
        },
    }
    await x.send_events([sse(abort), DONE])
    await x.send(LAST_CHUNK)


@case(
    f"streams {TOKENS_BEFORE_TROUBLE} tokens, then announces a chunk and closes the connection "
    "(FIN) half-way through it"
)
async def chunk_cut(x: Exchange) -> None:
    await x.first_tokens()
    event = token_event(x.api, TOKENS_BEFORE_TROUBLE + 1, x.max_tokens, x.prompt_tokens)
    await x.send(b"%X\r\n" % len(event) + event[: len(event) // 2])


@case(f"sends a well-formed response one byte every {TRICKLE_GAP_S:g} s", apis=(GENERATE,))
async def trickle(x: Exchange) -> None:
    response = head() + b"".join(chunk(e) for e in events(x.api, x.max_tokens, x.prompt_tokens))
    for i in range(len(response)):
        await x.send(response[i : i + 1])
        await x.pause(TRICKLE_GAP_S)
        if x.left.is_set():
            return


@case(f"streams {EXTRA_TOKENS} tokens more than max_tokens, with matching counts")
async def extra_tokens(x: Exchange) -> None:
    await x.send(head())
    await x.send_events(events(x.api, x.max_tokens + EXTRA_TOKENS, x.prompt_tokens))
    await x.send(LAST_CHUNK)


@case(
    "streams max_tokens tokens but its counts contradict them: /generate's last "
    "meta_info.completion_tokens drops to 1, /v1/completions' usage says 1 token"
)
async def wrong_counts(x: Exchange) -> None:
    n = x.max_tokens
    if x.api == GENERATE:
        stream = [generate_event(k, n, x.prompt_tokens, reported=k if k < n else 1) for k in range(1, n + 1)]
    else:
        stream = [completions_event(k, n) for k in range(1, n + 1)]
        stream.append(usage_event(x.prompt_tokens, 1))
    await x.send(head())
    await x.send_events(stream + [DONE])
    await x.send(LAST_CHUNK)


@case("reads the request and never answers (no status line, no headers)", apis=(GENERATE,))
async def no_headers(x: Exchange) -> None:
    await x.left.wait()


@case("sends part of the status line and headers, then resets the connection (RST)")
async def reset_in_headers(x: Exchange) -> None:
    await x.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/ev")
    await asyncio.sleep(0.05)  # the partial headers are read before the reset discards them
    x.reset()


IGNORE_EOS_REJECTION = {  # what a strict OpenAI-compatible server (FastAPI validation) answers
    "detail": [
        {
            "type": "extra_forbidden",
            "loc": ["body", "ignore_eos"],
            "msg": "Extra inputs are not permitted",
            "input": True,
        }
    ]
}


@case("answers 422 naming ignore_eos when the request asks for it; streams well otherwise")
async def rejects_ignore_eos(x: Exchange) -> None:
    if not x.ignore_eos:
        await ok(x)
        return
    body = json.dumps(IGNORE_EOS_REJECTION).encode()
    await x.send(
        b"HTTP/1.1 422 Unprocessable Entity\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body
    )


@case(
    "streams a whole response (finish reason and usage included), then ends the body cleanly "
    "without [DONE], as transformers serve does"
)
async def finish_without_done(x: Exchange) -> None:
    await x.send(head())
    await x.send_events(events(x.api, x.max_tokens, x.prompt_tokens)[:-1])
    await x.send(LAST_CHUNK)


def prompt_for(case_name: str, *, input_len: int = 8, output_len: int = 4, seed: int = 0) -> Prompt:
    """A prompt that gets ``case_name``'s behaviour (``"ok"``: a well-behaved stream)."""
    first = CASES[case_name].token
    rest = tuple(range(1 + seed, input_len + seed))
    return Prompt(token_ids=(first, *rest), output_len=output_len)


# -- the server ------------------------------------------------------------------------------


class HostileServer:
    """``asyncio.start_server`` on 127.0.0.1; one request per connection."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.url = ""
        self.exchanges: list[Exchange] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.writers: set[asyncio.StreamWriter] = set()
        self.by_token = {c.token: c for c in CASES.values()}

    async def start(self) -> HostileServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def stop(self) -> None:
        """Close every connection; the behaviours end as if their client had left."""
        if self.server is not None:
            self.server.close()
        for x in self.exchanges:
            x.left.set()
        for writer in self.writers:
            writer.transport.abort()
        if self.tasks:
            _, stuck = await asyncio.wait(self.tasks, timeout=STOP_TIMEOUT_S)
            for task in stuck:
                task.cancel()
        if self.server is not None:
            await self.server.wait_closed()

    async def __aenter__(self) -> HostileServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def exchanges_of(self, case_name: str) -> list[Exchange]:
        return [x for x in self.exchanges if x.case == case_name]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        self.writers.add(writer)
        watcher = None
        try:
            method, path, body = await read_request(reader)
            if method == "GET" and path == "/v1/models":
                await answer_json(writer, {"object": "list", "data": [{"id": MODEL}]})
                return
            x = self._exchange(path, json.loads(body), writer)
            self.exchanges.append(x)
            watcher = asyncio.create_task(note_close(reader, x.left))
            await CASES[x.case].run(x)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client gave up on us
        finally:
            if watcher is not None:
                watcher.cancel()
            writer.close()
            self.writers.discard(writer)
            self.tasks.discard(task)

    def _exchange(self, path: str, body: dict[str, Any], writer: asyncio.StreamWriter) -> Exchange:
        api = GENERATE if path == "/generate" else COMPLETIONS
        if api == GENERATE:
            ids, max_tokens = body["input_ids"], body["sampling_params"]["max_new_tokens"]
            ignore_eos = "ignore_eos" in body["sampling_params"]
        else:
            ids, max_tokens = body["prompt"], body["max_tokens"]
            ignore_eos = "ignore_eos" in body
        chosen = self.by_token.get(ids[0], CASES["ok"])
        return Exchange(chosen.name, api, len(ids), max_tokens, writer, ignore_eos)


async def read_request(reader: asyncio.StreamReader) -> tuple[str, str, bytes]:
    """Method, path and body of one HTTP/1.1 request with a Content-Length (or none)."""
    raw = await reader.readuntil(b"\r\n\r\n")
    request_line, *header_lines = raw.decode("latin-1").split("\r\n")
    method, path, _ = request_line.split(" ", 2)
    length = 0
    for line in header_lines:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    return method, path, await reader.readexactly(length)


async def answer_json(writer: asyncio.StreamWriter, obj: Any) -> None:
    body = json.dumps(obj).encode()
    writer.write(head("application/json", length=len(body)) + body)
    await writer.drain()


async def note_close(reader: asyncio.StreamReader, left: asyncio.Event) -> None:
    """Set ``left`` once the client closes its side (or resets)."""
    try:
        while await reader.read(1 << 16):
            pass
    except ConnectionError:
        pass
    left.set()


# -- one case's client, in a child process -----------------------------------------------------

REPO = Path(__file__).resolve().parents[2]


async def probe(url: str, api: str, case_name: str, timeout_s: float) -> dict[str, Any]:
    """Run ``case_name`` once in a child process (the production path: ``run_workload_sync``,
    uvloop) and return its record plus the child's memory during the run, in bytes: the
    ``tracemalloc`` peak and the peak RSS over the RSS after imports (``rss_growth``).

    The child writes its result to a file, not to stdout: a record can hold megabytes of text
    (``long_event``) and the event loop leaves stdout non-blocking, so a big print at exit can be
    cut short."""
    with tempfile.TemporaryDirectory(prefix="hostile-probe-") as tmp:
        out_path = Path(tmp) / "result.json"
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.helpers.hostile_server",
            "probe",
            url,
            api,
            case_name,
            str(timeout_s),
            str(out_path),
            cwd=REPO,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"probe {case_name} exited {proc.returncode}: {err.decode()[-2000:]}")
        return json.loads(out_path.read_text())


def _status_kib(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field_name} in /proc/self/status")


def _reset_peak_rss() -> int:
    """Reset the process's peak RSS (Linux ``clear_refs``); the current RSS in bytes."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kib("VmRSS") * 1024


def _probe_main(url: str, api: str, case_name: str, timeout_s: float) -> dict[str, Any]:
    import tracemalloc

    from pytest_pd.workload import Workload, run_workload_sync

    workload = Workload(
        input_len=8,
        output_len=4,
        concurrency=1,
        num_requests=1,
        warmup_requests=0,
        api=api,
        request_timeout_s=timeout_s,
    )
    prompts = [prompt_for(case_name)]
    rss_before = _reset_peak_rss()
    tracemalloc.start()
    t0 = time.perf_counter()
    result = run_workload_sync(url, workload, prompts)
    elapsed = time.perf_counter() - t0
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_growth = _status_kib("VmHWM") * 1024 - rss_before
    return {
        "record": result.records[0].to_dict(),
        "elapsed_s": elapsed,
        "traced_peak": traced_peak,
        "rss_growth": rss_growth,
    }


if __name__ == "__main__":
    if len(sys.argv) != 7 or sys.argv[1] != "probe":
        raise SystemExit(__doc__)
    result = _probe_main(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]))
    Path(sys.argv[6]).write_text(json.dumps(result))
