"""SGLang's OpenAI-compatible API: ``POST /v1/completions`` and ``/v1/chat/completions``,
streamed (``stream_options.include_usage``) or not."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from pytest_pd.sim import serving
from pytest_pd.sim.request import BadRequest, Req
from pytest_pd.sim.wire import compact, openai_error
from pytest_pd.sim.worker import SimWorker, no_room_message


class OpenAIAPI:
    def __init__(self, worker: SimWorker) -> None:
        self.worker = worker

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, chat=False)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, chat=True)

    def _chat_prompt_len(self, messages: Any) -> int:
        """A plain chat template: one '<|role|>' header line per message, then the assistant's;
        counted as SGLang counts a templated chat prompt (no special tokens added to it)."""
        if (
            not isinstance(messages, list)
            or not messages
            or not all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages)
        ):
            raise BadRequest("messages must be a non-empty list of {role, content} objects")
        text = "".join(f"<|{m.get('role', 'user')}|>\n{m['content']}\n" for m in messages)
        return len(self.worker.vocab.encode(text + "<|assistant|>\n"))

    async def _handle(self, request: web.Request, chat: bool) -> web.StreamResponse:
        w = self.worker
        arrival = w.clock.now()
        try:
            body = await serving.read_json(request)
            if chat:
                n_prompt = self._chat_prompt_len(body.get("messages"))
                max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
            else:
                if "prompt" not in body:
                    raise BadRequest("prompt is required")
                n_prompt = w.prompt_len(body["prompt"], "prompt")
                max_tokens = body.get("max_tokens")
            r = w.new_req(
                body,
                n_prompt,
                16 if max_tokens is None else max_tokens,
                bool(body.get("ignore_eos", False)),
                arrival,
            )
        except BadRequest as e:
            return openai_error(400, str(e))
        if w.unpaired(r):
            r.cancelled = r.done = True
            return openai_error(400, no_room_message(r.rid))
        try:
            return await self._serve(request, r, body, chat)
        finally:
            if not r.done:
                r.cancelled = True

    async def _serve(
        self, request: web.Request, r: Req, body: dict[str, Any], chat: bool
    ) -> web.StreamResponse:
        w = self.worker
        resp = serving.sse_response() if body.get("stream") else None
        failed = await serving.begin(w, request, r, body, resp)
        if failed is not None:
            return failed
        cid = ("chatcmpl-" if chat else "cmpl-") + r.rid
        created = int(time.time())
        name = body.get("model") or w.files.served_name
        if resp is None:
            await r.wait_done()
            text = w.vocab.output_text(r.offset, 0, r.emitted)
            choice = (
                {"index": 0, "message": {"role": "assistant", "content": text}}
                if chat
                else {"index": 0, "text": text}
            )
            choice.update(logprobs=None, finish_reason=r.finish_type, matched_stop=None)
            return web.json_response(
                {
                    "id": cid,
                    "object": "chat.completion" if chat else "text_completion",
                    "created": created,
                    "model": name,
                    "choices": [choice],
                    "usage": self._usage(r),
                    "metadata": {
                        "weight_version": "default",
                        "weight_versions": [{"version": "default", "start": 0, "end": r.emitted}],
                    },
                }
            )
        so = body.get("stream_options") or {}
        so = so if isinstance(so, dict) else {}
        include_usage = bool(so.get("include_usage"))
        # SGLang honours continuous_usage_stats alone (vLLM wants include_usage too)
        continuous = bool(so.get("continuous_usage_stats")) and not w.params.ignore_continuous_usage
        obj = "chat.completion.chunk" if chat else "text_completion"
        envelope = compact({"id": cid, "object": obj, "created": created, "model": name})[:-1]
        if chat:  # the first chunk announces the role, as OpenAI servers do
            await resp.write(
                f'data: {envelope},"choices":[{{"index":0,"delta":{{"role":'
                f'"assistant","content":""}},"logprobs":null,"finish_reason":null}}]}}'
                "\n\n".encode()
            )
        head = envelope.encode() + (
            b',"choices":[{"index":0,"delta":{"content":"' if chat else b',"choices":[{"index":0,"text":"'
        )
        close = b'"}' if chat else b'"'
        usage_null = b"" if chat else b',"usage":null'  # text completions: on every chunk
        usage_fmt = (
            b',"usage":{"prompt_tokens":%d,"total_tokens":%d,"completion_tokens":%d,"reasoning_tokens":0}'
        )
        open_end = b',"logprobs":null,"finish_reason":null,"matched_stop":null}]'
        jtext = w.vocab.jtext
        offset, size = r.offset, len(jtext)
        interval = max(1, int(getattr(w.args, "stream_interval", 1) or 1))
        p_tok = r.prompt_tokens
        sent = 0
        while True:
            n = r.emitted
            fin = r.done and n >= r.max_tokens
            if serving.stream_due(n, sent, fin, interval):
                piece = b"".join(jtext[(offset + i) % size] for i in range(sent, n))
                sent = n
                end = (
                    b',"logprobs":null,"finish_reason":"'
                    + r.finish_type.encode()
                    + b'","matched_stop":null}]'
                    if fin
                    else open_end
                )
                per_chunk = usage_fmt % (p_tok, p_tok + n, n) if continuous else usage_null
                chunk = b"data: " + head + piece + close + end + per_chunk + b"}\n\n"
                if not await serving.send_chunk(w, request, resp, r, chunk):
                    return resp
                if fin:
                    break
                continue
            r.event.clear()
            await r.event.wait()
        if include_usage:
            usage = {
                "prompt_tokens": r.prompt_tokens,
                "total_tokens": r.prompt_tokens + r.emitted,
                "completion_tokens": r.emitted,
                "reasoning_tokens": 0,
            }
            await resp.write(
                b"data: "
                + compact(
                    {
                        "id": cid,
                        "object": obj,
                        "created": created,
                        "model": name,
                        "choices": [],
                        "usage": usage,
                    }
                ).encode()
                + b"\n\n"
            )
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    def _usage(self, r: Req) -> dict[str, Any]:
        details = {"cached_tokens": 0} if self.worker.args.enable_cache_report else None
        return {
            "prompt_tokens": r.prompt_tokens,
            "total_tokens": r.prompt_tokens + r.emitted,
            "completion_tokens": r.emitted,
            "prompt_tokens_details": details,
            "reasoning_tokens": 0,
            "completion_tokens_details": None,
        }
