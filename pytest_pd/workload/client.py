"""One streaming request, SGLang ``/generate`` or OpenAI ``/v1/completions`` /
``/v1/chat/completions``: its body, the model lookup the OpenAI APIs need, and
:func:`send_request`, which sends it and fills its record.

Per request: the body is serialized once with orjson; the transport (:mod:`.transport`) stamps
every socket read and hands the body bytes to the request's SSE decoder (:mod:`.sse`) in the
same callback, so nothing is buffered and no task wakes up per chunk.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from .chat import chat_messages
from .record import (
    CONNECTION,
    DROPPED_CONNECTION,
    HTTP_STATUS,
    MALFORMED_STREAM,
    TIMEOUT,
    RequestRecord,
)
from .spec import API_CHAT, API_GENERATE, Prompt, WorkloadError
from .sse import MAX_SSE_LINE_BYTES, Answer, InBandError, LineTooLong, SSEStream, ended_stream_failure
from .transport import BodyCut, Dialer, Exchange, HTTPError, deadline

BODY_EXCERPT_CHARS = 500
MODEL_LIST_MAX_BYTES = 1 << 20
JSON_HEADERS = (("Content-Type", "application/json"), ("Accept", "text/event-stream"))
_DUMPS_OPTS = orjson.OPT_SERIALIZE_NUMPY
PATHS = {API_GENERATE: "/generate", API_CHAT: "/v1/chat/completions"}
# a cumulative usage on every chunk: token-true ITL (SGLang honours continuous_usage_stats alone,
# vLLM needs include_usage too)
STREAM_OPTIONS = {"include_usage": True, "continuous_usage_stats": True}
IGNORE_EOS_HINT = (
    "the server rejects ignore_eos: run without it (pytest-pd bench --disable-ignore-eos, "
    "Workload(ignore_eos=False)); outputs may then end early, their lengths taken from the "
    "server's usage"
)


def endpoint_url(base_url: str, api: str) -> str:
    return base_url.rstrip("/") + PATHS.get(api, "/v1/completions")


def request_payload(
    api: str,
    prompt: Prompt,
    *,
    max_tokens: int,
    model: str | None,
    rid: str | None = None,
    ignore_eos: bool = True,
) -> dict[str, Any]:
    """The JSON body (token ids may stay a numpy array: :func:`encode_body` serializes it). The
    chat API sends the text as one user message, with the output cap as both
    ``max_completion_tokens`` (OpenAI's current name; SGLang and vLLM take it first) and
    ``max_tokens`` (the deprecated name, the only one ``transformers serve`` honours: it ignores
    the other and generates up to its own default, 1024 tokens)."""
    body: dict[str, Any]
    if api == API_GENERATE:
        sampling: dict[str, Any] = {"max_new_tokens": max_tokens, "temperature": 0}
        if ignore_eos:
            sampling["ignore_eos"] = True
        body = {"input_ids": prompt.token_ids, "sampling_params": sampling, "stream": True}
    elif api == API_CHAT:
        if prompt.text is None:
            raise WorkloadError("the chat API needs text prompts; this prompt has token ids only")
        body = {
            "messages": [*prompt.history, *chat_messages(prompt.text)],
            "max_completion_tokens": max_tokens,
            "max_tokens": max_tokens,
            "temperature": 0,
            "stream": True,
            "stream_options": STREAM_OPTIONS,
        }
    else:
        body = {
            "prompt": prompt.text if prompt.text is not None else prompt.token_ids,
            "max_tokens": max_tokens,
            "temperature": 0,
            "stream": True,
            "stream_options": STREAM_OPTIONS,
        }
    if model is not None and api != API_GENERATE:
        body["model"] = model
    if ignore_eos and api != API_GENERATE:
        body["ignore_eos"] = True
    if rid is not None:
        body["rid"] = rid
    return body


def ignore_eos_rejected(status: int, answer: bytes, request_body: bytes) -> bool:
    """Whether an error answer refuses the ``ignore_eos`` the request sent (HTTP 400/422 naming
    the field, as strict OpenAI-compatible servers answer unknown fields)."""
    return status in (400, 422) and b"ignore_eos" in answer and b'"ignore_eos"' in request_body


def encode_body(payload: dict[str, Any]) -> bytes:
    key = "input_ids" if "input_ids" in payload else "prompt"
    ids = payload.get(key)  # none for the chat API (messages)
    if ids is not None and not isinstance(ids, (str, list)):
        if not hasattr(ids, "dtype"):  # tuples and other sequences
            payload = {**payload, key: [int(t) for t in ids]}
    return orjson.dumps(payload, option=_DUMPS_OPTS)


async def fetch_model_id(dialer: Dialer, base_url: str, timeout_s: float) -> str | None:
    """First model id from ``GET /v1/models`` (the OpenAI APIs' ``model`` field); None when the
    answer is an error or lists no model (``transformers serve`` may answer it with HTTP 500):
    the requests then name no model, which a server serving one model accepts (one that needs
    the name refuses the first request, saying so). Raises :class:`WorkloadError` when nothing
    answers."""
    url = base_url.rstrip("/") + "/v1/models"
    exchange: Exchange | None = None
    try:
        async with deadline(timeout_s):
            exchange = await dialer.open("GET", url, (("Accept", "application/json"),))
            await exchange.head()
            body = await exchange.excerpt(MODEL_LIST_MAX_BYTES)
        if exchange.status // 100 != 2:
            return None
        return str(orjson.loads(body)["data"][0]["id"])
    except asyncio.TimeoutError as exc:
        raise WorkloadError(
            f"{url} did not answer within {timeout_s:g} s (the request timeout) when asked for the "
            "model id. Check the server/router is healthy, or name the model (--model) to skip "
            "the look-up."
        ) from exc
    except (HTTPError, OSError) as exc:
        raise WorkloadError(
            f"Cannot reach {url} to look up the model id: {type(exc).__name__}: {exc}. "
            "Check that the server/router is up and the base URL is right."
        ) from exc
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    finally:
        if exchange is not None:
            exchange.close()


async def send_request(
    dialer: Dialer,
    base_url: str,
    api: str,
    prompt: Prompt,
    record: RequestRecord,
    *,
    max_tokens: int,
    timeout_s: float,
    model: str | None = None,
    body: bytes | None = None,
    ignore_eos: bool = True,
    answer: Answer | None = None,
) -> RequestRecord:
    """Send one streaming request and fill ``record``. Never raises for request failures.

    ``record.t_start`` is set here unless the caller already set it (the runner sets it right
    after acquiring the concurrency slot). ``body`` is the serialized request when the caller
    prepared it (else it is built here, with ``ignore_eos`` as given). ``answer`` keeps what the
    server answered (a conversation's next turn sends it back).
    """
    url = endpoint_url(base_url, api)
    if body is None:
        body = encode_body(
            request_payload(
                api, prompt, max_tokens=max_tokens, model=model, rid=record.rid, ignore_eos=ignore_eos
            )
        )
    stream = SSEStream(api, record, answer)
    exchange: Exchange | None = None
    got_response = False
    if record.t_start is None:
        record.t_start = time.perf_counter()
    try:
        async with deadline(timeout_s):
            exchange = await dialer.open("POST", url, JSON_HEADERS, body)
            await exchange.head()
            got_response = True
            record.status = exchange.status
            if exchange.status // 100 != 2:
                raw = await exchange.excerpt(BODY_EXCERPT_CHARS * 4)
                text = raw.decode("utf-8", errors="replace")
                hint = f" ({IGNORE_EOS_HINT})" if ignore_eos_rejected(exchange.status, raw, body) else ""
                record.fail(
                    HTTP_STATUS, f"HTTP {exchange.status} from {url}: {text[:BODY_EXCERPT_CHARS]}{hint}"
                )
                return record
            content_type = exchange.headers.get("content-type", "")
            if content_type and not content_type.lower().startswith("text/event-stream"):
                raw = await exchange.excerpt(BODY_EXCERPT_CHARS * 4)
                _fail_not_a_stream(record, url, content_type, raw)
                return record
            await exchange.stream(stream.feed)
        stream.finish(record.t_end or time.perf_counter())
    except asyncio.TimeoutError:
        progress = (
            f"{len(record.chunk_times)} output chunks received"
            if got_response
            else "no response headers received"
        )
        record.fail(TIMEOUT, f"no complete response from {url} within {timeout_s:g} s ({progress})")
        return record
    except InBandError as exc:
        record.fail(
            HTTP_STATUS, f"error event in stream from {url}: {str(exc)[:BODY_EXCERPT_CHARS]}", t=record.t_end
        )
        return record
    except BodyCut as exc:
        record.fail(DROPPED_CONNECTION, f"response body from {url} was cut: {exc}")
        return record
    except LineTooLong as exc:
        record.fail(
            MALFORMED_STREAM,
            f"stream from {url} sent an SSE line over the client's "
            f"{MAX_SSE_LINE_BYTES >> 20} MiB cap ({exc}) after {len(record.chunk_times)} "
            "output chunks",
            t=record.t_end,
        )
        return record
    except (ValueError, TypeError) as exc:  # orjson.JSONDecodeError, UnicodeDecodeError too
        record.fail(MALFORMED_STREAM, f"unparseable data line from {url}: {exc}", t=record.t_end)
        return record
    except (HTTPError, OSError) as exc:
        kind = DROPPED_CONNECTION if got_response else CONNECTION
        record.fail(kind, f"{type(exc).__name__} talking to {url}: {exc}")
        return record
    finally:
        if exchange is not None:
            exchange.close()
        stream.close()
        if record.t_end is None:
            record.t_end = time.perf_counter()

    failure = ended_stream_failure(stream, url)
    if failure is not None:
        record.fail(*failure, t=record.t_end)
    return record


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
        record.fail(
            HTTP_STATUS,
            f"{http} error from {url} instead of an event stream: {str(message)[:BODY_EXCERPT_CHARS]}",
        )
        return
    text = raw.decode("utf-8", errors="replace")
    record.fail(MALFORMED_STREAM, f"{http} from {url}, not an event stream: {text[:BODY_EXCERPT_CHARS]}")
