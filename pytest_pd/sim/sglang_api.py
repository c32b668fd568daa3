"""SGLang's native API: ``POST /generate``, streamed (cumulative ``text`` and ``output_ids``,
``meta_info`` on every chunk, ``data: [DONE]``) or not, with SGLang's error shapes."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from pytest_pd.sim import serving
from pytest_pd.sim.request import BadRequest, Req
from pytest_pd.sim.vocab import logprob_entries
from pytest_pd.sim.wire import compact
from pytest_pd.sim.worker import SimWorker, no_room_message


def generate_error(status: int, message: str) -> web.Response:
    """An error of SGLang's native API (/generate): ``{"error": {"message": …}}``."""
    return web.json_response({"error": {"message": message}}, status=status)


def sse_error_event(message: str, status: int = 400) -> bytes:
    """SGLang's in-band error of a stream that failed validation (after HTTP 200)."""
    return (
        b"data: "
        + compact(
            {
                "error": {
                    "message": message,
                    "type": "invalid_request_error",
                    "code": status,
                    "retryable": False,
                }
            }
        ).encode()
        + b"\n\ndata: [DONE]\n\n"
    )


class SGLangAPI:
    def __init__(self, worker: SimWorker) -> None:
        self.worker = worker

    async def generate(self, request: web.Request) -> web.StreamResponse:
        w = self.worker
        arrival = w.clock.now()
        try:
            body = await serving.read_json(request)
        except BadRequest as e:
            return generate_error(400, str(e))
        try:
            if "text" in body and body["text"] is not None:
                n_prompt = w.prompt_len(body["text"], "text")
            elif "input_ids" in body and body["input_ids"] is not None:
                n_prompt = w.prompt_len(body["input_ids"], "input_ids")
            else:
                raise BadRequest("one of text / input_ids is required")
            sp = body.get("sampling_params") or {}
            if not isinstance(sp, dict):
                raise BadRequest("sampling_params must be an object")
            r = w.new_req(
                body, n_prompt, sp.get("max_new_tokens", 128), bool(sp.get("ignore_eos", False)), arrival
            )
        except BadRequest as e:  # SGLang: a stream fails in band, after HTTP 200
            if body.get("stream"):
                return await serving.stream_only(request, sse_error_event(str(e)))
            return generate_error(400, str(e))
        if w.unpaired(r):
            r.cancelled = r.done = True
            return await self._reject_no_room(request, r)
        try:
            return await self._serve(request, r, body)
        finally:
            if not r.done:  # client went away or the request failed: leave the batch
                r.cancelled = True

    async def _reject_no_room(self, request: web.Request, r: Req) -> web.StreamResponse:
        """SGLang's answer: 400, or for a stream an aborted chunk then [DONE]."""
        message = no_room_message(r.rid)
        if not r.streaming:
            return generate_error(400, message)
        r.emitted = 0
        meta = self.meta(r, True)
        meta["finish_reason"] = {"type": "abort", "message": message, "status_code": 400, "err_type": None}
        del meta["forward_entry_time"]  # it never entered a forward batch
        chunk = {"text": "", "output_ids": [], "meta_info": meta}
        return await serving.stream_only(
            request, b"data: " + compact(chunk).encode() + b"\n\ndata: [DONE]\n\n"
        )

    async def _serve(self, request: web.Request, r: Req, body: dict[str, Any]) -> web.StreamResponse:
        w = self.worker
        resp = serving.sse_response() if body.get("stream") else None
        failed = await serving.begin(w, request, r, body, resp)
        if failed is not None:
            return failed
        if resp is None:
            await r.wait_done()
            if r.fault == "drop" and request.transport is not None:
                request.transport.abort()
            meta = self.meta(r, True)
            if body.get("return_logprob"):
                meta.update(self._logprobs(r, body))
            return web.json_response(
                {
                    "text": w.vocab.output_text(r.offset, 0, r.emitted),
                    "output_ids": w.vocab.output_ids(r.offset, 0, r.emitted),
                    "meta_info": meta,
                }
            )
        return await self._stream(request, r, resp)

    def _logprobs(self, r: Req, body: dict[str, Any]) -> dict[str, Any]:
        """Input logprobs come from whoever ran the prefill (in PD the router concatenates the
        prefill's list with the decode's, which is empty); output logprobs from the decoder."""
        vocab = self.worker.vocab
        if self.worker.role == "decode":
            prompt_ids: list[int] = []
        elif isinstance(body.get("input_ids"), list):
            prompt_ids = body["input_ids"]
        else:
            prompt_ids = vocab.encode(str(body.get("text", "")))
        return {
            "input_token_logprobs": logprob_entries(prompt_ids, first_is_none=True),
            "output_token_logprobs": logprob_entries(vocab.output_ids(r.offset, 0, r.emitted), False),
        }

    async def _stream(self, request: web.Request, r: Req, resp: web.StreamResponse) -> web.StreamResponse:
        w = self.worker
        incremental = w.args.incremental_streaming_output
        jtext, jid = w.vocab.jtext, w.vocab.jid
        offset, size = r.offset, len(jtext)
        text_buf = bytearray()
        ids_buf = bytearray()
        sent = 0
        interval = max(1, int(getattr(w.args, "stream_interval", 1) or 1))
        # meta_info of the chunks before the last one, formatted without a dict and json.dumps
        # per chunk (the same keys and values as meta(r, False); the first token is out, so
        # everything but the count is fixed)
        fixed = self.meta(r, False)
        cached = b'"cached_tokens":%d,"cached_tokens_details":%s,' % (
            fixed.pop("cached_tokens"),
            compact(fixed.pop("cached_tokens_details")).encode(),
        )
        del fixed["completion_tokens"], fixed["dp_rank"]
        meta_fmt = (
            compact(fixed)[:-1].encode() + b',"completion_tokens":%d,' + cached + b'"dp_rank":null%s}}\n\n'
        )
        while True:
            n = r.emitted
            if n > sent and (
                interval == 1 or serving.stream_due(n, sent, r.done and n >= r.max_tokens, interval)
            ):
                if incremental:
                    text_buf.clear()
                    ids_buf.clear()
                for i in range(sent, n):
                    k = (offset + i) % size
                    text_buf += jtext[k]
                    if ids_buf:
                        ids_buf += b","
                    ids_buf += jid[k]
                sent = n
                fin = r.done and sent >= r.max_tokens
                first = r.first_sent_ts is None
                if first:
                    r.first_sent_ts = w.clock.unix(w.clock.now())
                if fin:
                    meta = compact(self.meta(r, True, streamed=True)).encode() + b"}\n\n"
                else:
                    meta = meta_fmt % (
                        n,
                        b',"response_sent_to_client_ts":%r' % r.first_sent_ts if first else b"",
                    )
                chunk = b"".join(
                    (b'data: {"text":"', text_buf, b'","output_ids":[', ids_buf, b'],"meta_info":', meta)
                )
                if not await serving.send_chunk(w, request, resp, r, chunk):
                    return resp
                if fin:
                    break
                continue
            r.event.clear()
            await r.event.wait()
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    def _finish_reason(self, r: Req) -> dict[str, Any]:
        if r.finish_type == "stop":
            return {"type": "stop", "matched": self.worker.vocab.eos_id}
        return {"type": "length", "length": r.emitted}

    def meta(self, r: Req, finished: bool, streamed: bool = False) -> dict[str, Any]:
        """``meta_info`` as SGLang 0.5.23 sends it: every chunk has the counts and scheduling
        fields; the final answer adds the finish reason, latencies (wall seconds) and Unix
        timestamps, and when streamed ``decode_throughput``. (The first streamed chunk's
        ``response_sent_to_client_ts`` is added in _stream.)"""
        unix = self.worker.clock.unix
        entry = r.kv_arrived or r.prefill_done or r.arrival
        m: dict[str, Any] = {
            "id": r.rid,
            "finish_reason": None,
            "prompt_tokens": r.prompt_tokens,
            "weight_version": "default",
            "num_retractions": 0,
            "forward_entry_time": unix(entry),
            "queue_time": max(0.0, (r.first_token_at or entry) - entry),
            "reasoning_tokens": 0,
            "completion_tokens": r.emitted,
            "cached_tokens": r.cached,
            "cached_tokens_details": {"device": r.cached, "host": 0} if r.cached else None,
            "dp_rank": None,
        }
        if not finished:
            return m
        now = self.worker.clock.now()
        first = r.first_token_at or now
        m.update(
            finish_reason=self._finish_reason(r),
            weight_versions=[{"version": "default", "start": 0, "end": r.emitted}],
            e2e_latency=now - r.arrival,
            request_received_ts=unix(r.arrival),
            first_token_latency=first - r.arrival,
            api_server_dispatch_finish_ts=unix(r.arrival),
            response_sent_to_client_ts=r.first_sent_ts or unix(now),
            request_finished_ts=unix(now),
        )
        if streamed:
            m["decode_throughput"] = (r.emitted - 1) / (now - first) if r.emitted > 1 and now > first else 0.0
        return m
