"""Simulated SGLang worker: a real aiohttp server speaking SGLang's worker HTTP API.

Launched like ``python -m sglang.launch_server`` (same flag names) as ``python -m pytest_pd.sim``;
the real ``sglang-router`` can route to it in PD mode. Timing comes from :mod:`pytest_pd.sim.model`
(model seconds divided by ``--sim-speedup``); tokens are paced against absolute deadlines.

Roles (``--disaggregation-mode``):
  null     unified server: local chunked prefill, then the local decode batch.
  prefill  chunked prefill only; answers with one token after the compute, marks the request's
           KV ready for its ``bootstrap_room`` and serves ``GET /sim/kv/{room}`` (long poll) on
           ``--disaggregation-bootstrap-port``.
  decode   waits for the room's KV at ``bootstrap_host:bootstrap_port``, adds the KV transfer
           time, emits the first token, then one token per decode step of the running batch.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import json
import logging
import os
import random
import signal
import sys
import time
import uuid
from array import array
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, ClientTimeout, web
from aiohttp.http_exceptions import BadHttpMessage

from pytest_pd.sim import model
from pytest_pd.sim.metrics import SimMetrics
from pytest_pd.sim.model import SimParams, sim_flag

VERSION = "sim (pytest-pd)"
TRACE_KEEP = 4096
KV_KEEP = 16384


def log(msg: str) -> None:
    print(f"[pytest-pd sim] {msg}", flush=True)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def _str2bool(v: str | bool) -> bool:
    if isinstance(v, bool):
        return v
    s = v.strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {v!r}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pytest_pd.sim",
        description="Simulated SGLang worker (drop-in for python -m sglang.launch_server).",
    )
    a = p.add_argument
    a("--model-path", required=True,
      help="local directory holding tokenizer.json (and optionally config.json)")
    a("--tokenizer-path", default=None)
    a("--served-model-name", default=None)
    a("--host", default="127.0.0.1")
    a("--port", type=int, default=30000)
    a("--disaggregation-mode", choices=["null", "prefill", "decode"], default="null")
    a("--disaggregation-bootstrap-port", type=int, default=8998)
    a("--disaggregation-transfer-backend", default="mooncake")
    a("--disaggregation-ib-device", default=None)
    a("--disaggregation-prefill-pp", type=int, default=1)
    a("--disaggregation-decode-tp", type=int, default=None)
    a("--disaggregation-decode-dp", type=int, default=None)
    a("--tp-size", "--tp", dest="tp_size", type=int, default=1)
    a("--pp-size", "--pp", dest="pp_size", type=int, default=1)
    a("--dp-size", "--dp", dest="dp_size", type=int, default=1)
    a("--chunked-prefill-size", type=int, default=8192)
    a("--max-running-requests", type=int, default=None)
    a("--max-total-tokens", type=int, default=None)
    a("--context-length", type=int, default=None)
    a("--page-size", type=int, default=1)
    a("--mem-fraction-static", type=float, default=None)
    a("--attention-backend", default=None)
    a("--trust-remote-code", action="store_true")
    a("--enable-cache-report", action="store_true")
    a("--disable-overlap-schedule", action="store_true")
    a("--incremental-streaming-output", action="store_true")
    a("--dist-timeout", type=int, default=None)
    a("--nnodes", type=int, default=1)
    a("--node-rank", type=int, default=0)
    a("--dist-init-addr", default=None)
    a("--enable-metrics", action="store_true")
    for f in dataclasses.fields(SimParams):
        typ = f.type if isinstance(f.type, type) else {"float": float, "int": int,
                                                      "bool": bool, "str": str}[str(f.type)]
        kw: dict[str, Any] = {"dest": "sim_" + f.name, "default": f.default,
                              "help": f"SimParams.{f.name} (default {f.default!r})"}
        if typ is bool:
            kw.update(type=_str2bool, nargs="?", const=True)
        else:
            kw["type"] = typ
        p.add_argument(sim_flag(f.name), **kw)
    return p


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, SimParams, list[str]]:
    args, unknown = build_parser().parse_known_args(argv)
    params = SimParams(**{f.name: getattr(args, "sim_" + f.name)
                          for f in dataclasses.fields(SimParams)})
    if params.speedup <= 0:
        raise SystemExit("--sim-speedup must be > 0")
    if params.fault not in model.FAULTS:
        raise SystemExit(f"--sim-fault: unknown fault {params.fault!r}; known: "
                         f"{', '.join(f for f in model.FAULTS if f)}")
    return args, params, unknown


# ---------------------------------------------------------------------------------------------
# Tokens
# ---------------------------------------------------------------------------------------------


class Vocab:
    """Tokenizer for prompt counting plus a pool of output tokens (space-led ASCII words that
    re-encode to themselves, so the concatenated text re-tokenizes to the same ids)."""

    def __init__(self, tokenizer_json: Path, seed: int) -> None:
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_file(str(tokenizer_json))
        pool: list[int] = []
        for i in range(self.tok.get_vocab_size()):
            s = self.tok.decode([i])
            if (len(s) >= 3 and s[0] == " " and s[1:].isascii() and s[1:].isalpha()
                    and self.tok.encode(s, add_special_tokens=False).ids == [i]):
                pool.append(i)
            if len(pool) >= 512:
                break
        if not pool:  # odd tokenizer: any non-special single-token strings
            special = set(self.tok.get_added_tokens_decoder())
            pool = [i for i in range(self.tok.get_vocab_size())
                    if i not in special and self.tok.decode([i])][:512]
        random.Random(seed).shuffle(pool)
        self.ids = pool
        self.text = [self.tok.decode([i]) for i in pool]
        # JSON-escaped text pieces (ASCII words need no escaping, but stay correct anyway)
        self.jtext = [json.dumps(t)[1:-1].encode() for t in self.text]
        self.jid = [str(i).encode() for i in pool]
        eos = None
        for name in ("<|eos|>", "</s>", "<|endoftext|>", "<eos>"):
            eos = self.tok.token_to_id(name)
            if eos is not None:
                break
        self.eos_id = eos

    def count(self, text: str) -> int:
        """Prompt length as SGLang counts a text prompt: with the tokenizer's special tokens
        (e.g. a BOS its post-processor adds)."""
        return len(self.tok.encode(text, add_special_tokens=True).ids)

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids


def logprob_entries(ids: list[int], first_is_none: bool) -> list[list[Any]]:
    """SGLang's ``[logprob, token_id, None]`` triples with made-up but stable values; the first
    prompt token has no logprob (nothing precedes it)."""
    out: list[list[Any]] = [[round(-0.25 - (t % 17) * 0.125, 4), t, None] for t in ids]
    if first_is_none and out:
        out[0][0] = None
    return out


# ---------------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------------


class BadRequest(Exception):
    pass


class Req:
    __slots__ = ("rid", "room", "prompt_tokens", "max_tokens", "finish_type", "arrival",
                 "prefill_done", "kv_arrived", "token_times", "emitted", "event", "done",
                 "cancelled", "offset", "ctx", "fault", "prompt_head", "sent_times", "sent_tokens",
                 "streaming", "first_token_at", "first_sent_ts")

    def __init__(self, rid: str, room: Any, prompt_tokens: int, max_tokens: int,
                 finish_type: str, arrival: float, offset: int) -> None:
        self.rid = rid
        self.room = room
        self.prompt_tokens = prompt_tokens
        self.max_tokens = max_tokens
        self.finish_type = finish_type
        self.arrival = arrival
        self.prefill_done: float | None = None
        self.kv_arrived: float | None = None
        # compact arrays: a trace of the last TRACE_KEEP requests holds a time per token
        self.token_times = array("d")
        self.emitted = 0
        self.event = asyncio.Event()
        self.done = False
        self.cancelled = False
        self.offset = offset
        self.ctx = prompt_tokens
        self.fault = ""
        self.prompt_head: list[int] | None = None
        # per streamed chunk: when it was handed to the transport, and the tokens sent up to it
        self.sent_times = array("d")
        self.sent_tokens = array("l")
        self.streaming = False
        self.first_token_at: float | None = None
        self.first_sent_ts: float | None = None  # unix time the first chunk went out

    def emit(self, t: float) -> None:
        if self.first_token_at is None:
            self.first_token_at = t
        self.emitted += 1
        self.ctx += 1
        self.token_times.append(t)
        if self.emitted >= self.max_tokens:
            self.done = True
        self.event.set()

    def trace(self) -> dict[str, Any]:
        return {"rid": self.rid, "room": self.room, "arrival": self.arrival,
                "prefill_done": self.prefill_done, "kv_arrived": self.kv_arrived,
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.emitted,
                "prompt_head": self.prompt_head,
                "first_sent": self.sent_times[0] if self.sent_times else None,
                "token_times": self.token_times.tolist(), "sent_times": self.sent_times.tolist(),
                "sent_tokens": self.sent_tokens.tolist()}


def _generate_error(status: int, message: str) -> web.Response:
    """An error of SGLang's native API (/generate): ``{"error": {"message": …}}``."""
    return web.json_response({"error": {"message": message}}, status=status)


def _openai_error(status: int, message: str, etype: str = "BadRequestError") -> web.Response:
    """An error of SGLang's OpenAI-compatible API (/v1/...): SGLang's flat fields, plus (sim
    only) OpenAI's ``error`` object, which clients and the existing tests read. Also the shape of
    the sim's own errors (KV long-poll, faults): readable either way."""
    return web.json_response({"object": "error", "message": message, "type": etype,
                              "param": None, "code": status,
                              "error": {"message": message, "type": etype, "code": status}},
                             status=status)


def _compact(obj: Any) -> str:
    """JSON as SGLang writes its stream events (orjson: no spaces)."""
    return json.dumps(obj, separators=(",", ":"))


def _sse_error_event(message: str, status: int = 400) -> bytes:
    """SGLang's in-band error of a stream that failed validation (after HTTP 200)."""
    return b"data: " + _compact({"error": {
        "message": message, "type": "invalid_request_error", "code": status,
        "retryable": False}}).encode() + b"\n\ndata: [DONE]\n\n"


def no_room_message(rid: str) -> str:
    return ("Invalid request: Disaggregated request received without bootstrap room id. "
            f"req.rid='{rid}'")


# ---------------------------------------------------------------------------------------------
# Server
# ---------------------------------------------------------------------------------------------


class SimServer:
    def __init__(self, args: argparse.Namespace, params: SimParams) -> None:
        self.args = args
        self.params = params
        self.role = args.disaggregation_mode
        mp = Path(args.model_path).expanduser().resolve()
        tp_dir = Path(args.tokenizer_path).expanduser().resolve() if args.tokenizer_path else mp
        tj = tp_dir / "tokenizer.json" if tp_dir.is_dir() else tp_dir
        if not tj.is_file():
            raise SystemExit(f"pytest-pd sim: no tokenizer.json at {tj} (--model-path / "
                             "--tokenizer-path must be a local directory holding tokenizer.json)")
        self.model_path = str(mp)
        self.tokenizer_path = str(tp_dir)
        self.served_name = args.served_model_name or mp.name
        self.vocab = Vocab(tj, params.seed)
        self.context_length = args.context_length or self._config_context(mp) or 65536
        self.speedup = params.speedup
        self.loop: asyncio.AbstractEventLoop | None = None
        self.epoch = 0.0
        self.ready_at = 0.0
        self.rid_counter = itertools.count()
        self.out_offset = itertools.count(0, 7919)
        # prefill
        self.sched = model.PrefillScheduler(params, args.tp_size, args.pp_size,
                                            args.chunked_prefill_size)
        self.prefill_futs: dict[int, asyncio.Future[float]] = {}
        self.prefill_arrival: dict[int, float] = {}
        self.prefill_wake = asyncio.Event()
        self.prefill_keys = itertools.count()
        # decode
        self.shape = model.ServerShape(tp=args.tp_size, pp=args.pp_size,
                                       chunked_prefill_size=args.chunked_prefill_size,
                                       prefill_pp=args.disaggregation_prefill_pp,
                                       max_running_requests=args.max_running_requests)
        self.max_running = model.max_running(params, self.shape)
        self.waiting: deque[Req] = deque()
        self.running: list[Req] = []
        self.decode_wake = asyncio.Event()
        # PD
        self.kv: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.kv_waiters: dict[str, list[asyncio.Future[dict[str, Any]]]] = {}
        self.session: ClientSession | None = None
        # bookkeeping
        self.trace_buf: deque[Req] = deque(maxlen=TRACE_KEEP)
        self.stats = {"requests": 0}
        self.tasks: list[asyncio.Task[None]] = []
        self.time_factor = 1.0  # > 1 under `fault: slow`
        self.kv_waiting = 0  # decode: requests waiting for their KV
        self.unix_offset = 0.0  # time.time() - loop time, set at start
        self.max_total_tokens = (args.max_total_tokens
                                 or self.max_running * min(self.context_length, 8192))
        self.metrics = self._make_metrics()

    def _make_metrics(self) -> SimMetrics:
        used = lambda: float(sum(r.ctx for r in self.running))  # noqa: E731
        gauges = {
            "num_running_reqs": lambda: len(self.running),
            "num_queue_reqs": lambda: len(self.waiting) + len(self.sched.queue),
            "num_used_tokens": used,
            "token_usage": lambda: used() / self.max_total_tokens,
            "cache_hit_rate": lambda: 0.0,
            "num_prefill_bootstrap_queue_reqs": lambda: 0,
            "num_prefill_inflight_queue_reqs": lambda: len(self.kv_waiters),
            "num_decode_prealloc_queue_reqs": lambda: 0,
            "num_decode_transfer_queue_reqs": lambda: self.kv_waiting,
        }
        static = {"max_total_num_tokens": self.max_total_tokens,
                  "context_len": self.context_length, "page_size": self.args.page_size}
        return SimMetrics(self.served_name, self.speedup, self.role, gauges, static)

    @staticmethod
    def _config(mp: Path) -> dict[str, Any]:
        """The model folder's config.json ({} when there is none)."""
        try:
            cfg = json.loads((mp / "config.json").read_text())
        except (OSError, ValueError):
            return {}
        return cfg if isinstance(cfg, dict) else {}

    @classmethod
    def _config_context(cls, mp: Path) -> int | None:
        v = cls._config(mp).get("max_position_embeddings")
        try:
            return int(v) if v else None
        except (TypeError, ValueError):
            return None

    # -- clocks ---------------------------------------------------------------------------
    def now(self) -> float:
        assert self.loop is not None
        return self.loop.time()

    def to_model(self, wall: float) -> float:
        return (wall - self.epoch) * self.speedup

    def to_wall(self, model_t: float) -> float:
        return self.epoch + model_t / self.speedup

    async def sleep_until(self, wall: float) -> None:
        delay = wall - self.now()
        if delay > 0:
            await asyncio.sleep(delay)

    # -- life cycle -----------------------------------------------------------------------
    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.epoch = self.now()
        self.unix_offset = time.time() - self.epoch
        self.ready_at = self.epoch + max(0.0, self.params.startup_delay_s)
        self.tasks.append(asyncio.create_task(self.prefill_loop()))
        self.tasks.append(asyncio.create_task(self.decode_loop()))
        if self.role == "decode":
            self.session = ClientSession(timeout=ClientTimeout(
                total=self.params.bootstrap_timeout_s + 10))

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        if self.session is not None:
            await self.session.close()

    # -- prefill scheduler ----------------------------------------------------------------
    def submit_prefill(self, tokens: int, arrival: float) -> asyncio.Future[float]:
        """Queue a prefill that arrived at wall time ``arrival`` (before parsing/tokenizing);
        the future resolves to the wall time its compute finished."""
        assert self.loop is not None
        key = next(self.prefill_keys)
        fut: asyncio.Future[float] = self.loop.create_future()
        self.prefill_futs[key] = fut
        self.prefill_arrival[key] = self.to_model(arrival)
        self.sched.submit(key, tokens)
        self.prefill_wake.set()
        return fut

    def _prefill_finish(self, key: int, wall: float) -> None:
        fut = self.prefill_futs.pop(key, None)
        self.prefill_arrival.pop(key, None)
        if fut is not None and not fut.done():
            fut.set_result(wall)

    async def prefill_loop(self) -> None:
        assert self.loop is not None
        sched = self.sched
        while True:
            if not sched.has_work():
                self.prefill_wake.clear()
                await self.prefill_wake.wait()
                # let requests arriving in the same instant join this batch
                await asyncio.sleep(0)
                continue
            free = self.to_wall(sched.stage0_free_at)
            if free > self.now():
                await self.sleep_until(free)
                continue
            head_key = sched.queue[0].key
            head_arrival = self.prefill_arrival.get(head_key, 0.0)
            # Requests that reach an idle prefill within arrival_window_s (wall) of each other
            # batch as if they arrived together: client and router dispatch spread them by a few
            # ms, which the speedup would otherwise magnify into seconds of model time.
            gather_until = self.to_wall(head_arrival) + self.params.arrival_window_s
            if head_arrival >= sched.stage0_free_at and gather_until > self.now():
                await self.sleep_until(gather_until)
                continue
            # absolute time: the batch logically forms when stage 0 frees or its head arrived
            form = max(sched.stage0_free_at, head_arrival)
            form = min(form, self.to_model(self.now()))
            batch = sched.next_batch(form)
            if batch is None:  # pragma: no cover - defensive
                await asyncio.sleep(0.001)
                continue
            done_wall = self.to_wall(batch.done_at)
            for key in batch.finished:
                self.loop.call_at(done_wall, self._prefill_finish, key, done_wall)

    # -- decode loop ----------------------------------------------------------------------
    def join_decode(self, r: Req) -> None:
        self.waiting.append(r)
        self.decode_wake.set()

    async def decode_loop(self) -> None:
        params, tp = self.params, self.args.tp_size
        running, waiting = self.running, self.waiting
        step_start: float | None = None
        while True:
            while waiting and len(running) < self.max_running:
                r = waiting.popleft()
                if not r.cancelled:
                    running.append(r)
            if not running:
                step_start = None
                self.decode_wake.clear()
                await self.decode_wake.wait()
                continue
            if step_start is None:
                step_start = self.now()
            b = len(running)
            mean_ctx = sum(r.ctx for r in running) / b
            step = model.decode_step_time(params, b, mean_ctx, tp) * self.time_factor
            deadline = step_start + step / self.speedup
            await self.sleep_until(deadline)
            t = self.now()
            keep = []
            streamed = 0
            for r in running:
                if r.cancelled:
                    continue
                r.emit(t)
                streamed += r.streaming
                if r.done:
                    self._finished(r, t)
                else:
                    keep.append(r)
            running[:] = keep
            self.metrics.decode_step(streamed, b - streamed, step)
            step_start = deadline  # absolute: never accumulate sleep drift; catch up if behind

    def _finished(self, r: Req, t: float) -> None:
        ttft = (r.first_token_at or t) - r.arrival
        self.metrics.request_finished(r.streaming, t - r.arrival, ttft, r.emitted)

    # -- PD: KV readiness (prefill side) --------------------------------------------------
    def kv_ready(self, room: str, prompt_tokens: int, at: float) -> None:
        info = {"room": room, "prompt_tokens": prompt_tokens, "ready_at": at}
        self.kv[room] = info
        while len(self.kv) > KV_KEEP:
            self.kv.popitem(last=False)
        for fut in self.kv_waiters.pop(room, []):
            if not fut.done():
                fut.set_result(info)

    async def handle_kv(self, request: web.Request) -> web.Response:
        assert self.loop is not None
        room = request.match_info["room"]
        info = self.kv.get(room)
        if info is None:
            fut: asyncio.Future[dict[str, Any]] = self.loop.create_future()
            self.kv_waiters.setdefault(room, []).append(fut)
            try:
                info = await asyncio.wait_for(fut, self.params.bootstrap_timeout_s)
            except asyncio.TimeoutError:
                return _openai_error(504, f"KV of bootstrap room {room} not ready after "
                                 f"{self.params.bootstrap_timeout_s} s", "Timeout")
            finally:
                lst = self.kv_waiters.get(room)
                if lst is not None and fut in lst:
                    lst.remove(fut)
                    if not lst:
                        del self.kv_waiters[room]
        tokens = int(info["prompt_tokens"])
        self.metrics.kv_transfer(model.kv_transfer_time(self.params, tokens, self.args.pp_size),
                                 tokens * self.params.kv_bytes_per_token)
        return web.json_response(info)

    # -- request parsing ------------------------------------------------------------------
    async def _json(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json(loads=json.loads)
        except (ValueError, UnicodeDecodeError) as e:
            raise BadRequest(f"malformed JSON body: {e}") from None
        if not isinstance(body, dict):
            raise BadRequest("request body must be a JSON object")
        return body

    def _prompt_len(self, prompt: Any, what: str) -> int:
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
            prompt = prompt[0]
        if isinstance(prompt, str):
            return self.vocab.count(prompt)
        if isinstance(prompt, list) and all(isinstance(x, int) and not isinstance(x, bool)
                                            for x in prompt):
            return len(prompt)
        raise BadRequest(f"{what} must be a string or a list of token ids")

    def _new_req(self, body: dict[str, Any], prompt_tokens: int, max_tokens: Any,
                 ignore_eos: bool, arrival: float) -> Req:
        if prompt_tokens <= 0:
            raise BadRequest("empty prompt")
        if prompt_tokens >= self.context_length:
            raise BadRequest(
                f"The input ({prompt_tokens} tokens) is longer than the model's context length "
                f"({self.context_length} tokens).")
        if max_tokens is None:
            max_tokens = 128
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 0:
            raise BadRequest("max_new_tokens / max_tokens must be a non-negative integer")
        n, finish = max(1, max_tokens), "length"
        eos_after = self.params.eos_after_tokens
        if not ignore_eos and eos_after > 0 and eos_after < n:
            n, finish = eos_after, "stop"
        room = body.get("bootstrap_room")
        if room is not None and not isinstance(room, (int, str)):
            raise BadRequest("bootstrap_room must be an integer")
        rid = body.get("rid") if isinstance(body.get("rid"), str) else uuid.uuid4().hex
        r = Req(rid, room, prompt_tokens, n, finish, arrival,
                next(self.out_offset) % len(self.vocab.ids))
        r.streaming = bool(body.get("stream"))
        ids = body.get("input_ids", body.get("prompt"))
        if isinstance(ids, list) and ids and isinstance(ids[0], int):
            r.prompt_head = ids[:8]  # lets tests match a client's request to its trace
        if model.fault_strikes(self.params, self.stats["requests"]):
            r.fault = self.params.fault
        self.stats["requests"] += 1
        self.metrics.request_arrived(r.streaming, prompt_tokens)
        self.trace_buf.append(r)
        return r

    # -- the request life cycle -----------------------------------------------------------
    async def run_request(self, r: Req, body: dict[str, Any]) -> None:
        """Drive ``r`` until its first token is emitted (later tokens come from decode_loop)."""
        if self.role == "prefill":
            done = await self._prefill(r)
            r.prefill_done = done
            if r.room is not None:
                self.kv_ready(str(r.room), r.prompt_tokens, done)
            r.max_tokens = 1
            r.finish_type = "length"
            now = self.now()
            r.emit(now)
            self.metrics.first_token(r.streaming, now - r.arrival)
            self._finished(r, now)
            return
        host, port = body.get("bootstrap_host"), body.get("bootstrap_port")
        if self.role == "decode" and r.room is not None and host:
            await self._fetch_kv(r, str(host), port)
        else:
            r.prefill_done = await self._prefill(r)
            r.kv_arrived = r.prefill_done
        now = self.now()
        r.emit(now)
        self.metrics.first_token(r.streaming, now - r.arrival)
        if r.done:
            self._finished(r, now)
        else:
            self.join_decode(r)

    async def _prefill(self, r: Req) -> float:
        """Run ``r``'s prefill; the wall time it finished (stretched under ``fault: slow``)."""
        done = await self.submit_prefill(r.prompt_tokens, r.arrival)
        if self.time_factor != 1.0:
            done += (done - r.arrival) * (self.time_factor - 1.0)
            await self.sleep_until(done)
        return done

    async def _fetch_kv(self, r: Req, host: str, port: Any) -> None:
        assert self.session is not None
        if port in (None, ""):
            port = self.args.disaggregation_bootstrap_port
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        url = f"http://{host}:{int(port)}/sim/kv/{r.room}"
        asked = self.now()
        self.kv_waiting += 1
        try:
            async with self.session.get(url) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"bootstrap {url} answered HTTP {resp.status}")
                await resp.read()
        except Exception as e:  # noqa: BLE001 - any bootstrap failure aborts the request
            self.metrics.failed("bootstrap")
            raise RuntimeError(f"KV bootstrap failed for room {r.room}: {e}") from None
        finally:
            self.kv_waiting -= 1
        ready = self.now()
        r.prefill_done = ready
        self.metrics.kv_bootstrap_ms.observe(self.metrics.model_seconds(ready - asked) * 1000.0)
        self.metrics.kv_alloc_ms.observe(0.0)
        transfer = model.kv_transfer_time(self.params, r.prompt_tokens,
                                          self.args.disaggregation_prefill_pp)
        arrive = ready + transfer / self.speedup
        self.metrics.kv_transfer(transfer, r.prompt_tokens * self.params.kv_bytes_per_token)
        await self.sleep_until(arrive)
        r.kv_arrived = arrive

    def _token_piece(self, r: Req, i: int) -> int:
        return (r.offset + i) % len(self.vocab.ids)

    def _text(self, r: Req, start: int, end: int) -> str:
        t = self.vocab.text
        return "".join(t[self._token_piece(r, i)] for i in range(start, end))

    def _ids(self, r: Req, start: int, end: int) -> list[int]:
        ids = self.vocab.ids
        return [ids[self._token_piece(r, i)] for i in range(start, end)]

    def _finish_reason(self, r: Req) -> dict[str, Any]:
        if r.finish_type == "stop":
            return {"type": "stop", "matched": self.vocab.eos_id}
        return {"type": "length", "length": r.emitted}

    def unix(self, t: float) -> float:
        """Loop time → Unix time (SGLang's ``*_ts`` and ``forward_entry_time`` fields)."""
        return t + self.unix_offset

    def _meta(self, r: Req, finished: bool, streamed: bool = False) -> dict[str, Any]:
        """``meta_info`` as SGLang 0.5.23 sends it: every chunk has the counts and scheduling
        fields; the final answer adds the finish reason, latencies (wall seconds) and Unix
        timestamps, and when streamed ``decode_throughput``. (The first streamed chunk's
        ``response_sent_to_client_ts`` is added in _stream_generate.)"""
        entry = r.kv_arrived or r.prefill_done or r.arrival
        m: dict[str, Any] = {
            "id": r.rid, "finish_reason": None, "prompt_tokens": r.prompt_tokens,
            "weight_version": "default", "num_retractions": 0,
            "forward_entry_time": self.unix(entry),
            "queue_time": max(0.0, (r.first_token_at or entry) - entry), "reasoning_tokens": 0,
            "completion_tokens": r.emitted, "cached_tokens": 0, "cached_tokens_details": None,
            "dp_rank": None}
        if not finished:
            return m
        now = self.now()
        first = r.first_token_at or now
        m.update(finish_reason=self._finish_reason(r),
                 weight_versions=[{"version": "default", "start": 0, "end": r.emitted}],
                 e2e_latency=now - r.arrival, request_received_ts=self.unix(r.arrival),
                 first_token_latency=first - r.arrival,
                 api_server_dispatch_finish_ts=self.unix(r.arrival),
                 response_sent_to_client_ts=r.first_sent_ts or self.unix(now),
                 request_finished_ts=self.unix(now))
        if streamed:
            m["decode_throughput"] = ((r.emitted - 1) / (now - first)
                                      if r.emitted > 1 and now > first else 0.0)
        return m

    async def _early_fault(self, r: Req) -> web.Response | None:
        """Faults that strike before any work: crash, hang, error."""
        if r.fault == "crash":
            log(f"simulated fault: crash (SIGKILL) on request {r.rid}")
            os.kill(os.getpid(), signal.SIGKILL)
        if r.fault == "hang":
            log(f"simulated fault: hang on request {r.rid}")
            await asyncio.Event().wait()  # until the client gives up and disconnects
        if r.fault == "error":
            status = self.params.fault_status
            log(f"simulated fault: HTTP {status} on request {r.rid}")
            return _openai_error(status, f"simulated fault: HTTP {status}", "InternalServerError")
        if r.fault == "slow" and self.time_factor == 1.0:
            log(f"simulated fault: from request {r.rid} on, every model time × "
                f"{self.params.fault_slowdown:g}")
            self.time_factor = self.params.fault_slowdown
        return None

    async def _send_chunk(self, request: web.Request, resp: web.StreamResponse, r: Req,
                          chunk: bytes) -> bool:
        """Write one SSE chunk (noting when it was handed to the transport and how many tokens
        were sent with it); False once a fault cut the stream."""
        r.sent_times.append(self.now())
        r.sent_tokens.append(r.emitted)
        await resp.write(chunk)
        if self._cut_here(request, r):
            return False
        await self._maybe_malformed(resp, r)
        return True

    async def _maybe_malformed(self, resp: web.StreamResponse, r: Req) -> None:
        """``fault: malformed``: one data line that is not JSON, once, then the stream goes on."""
        if r.fault == "malformed" and r.emitted >= self.params.fault_drop_after_tokens:
            log(f"simulated fault: malformed SSE line in request {r.rid}")
            r.fault = ""
            await resp.write(b'data: {"text": "unterminated\n\n')

    def _cut_here(self, request: web.Request, r: Req) -> bool:
        """``fault: drop`` strikes once ``fault_drop_after_tokens`` were streamed: abort the
        connection mid-body (the client sees a stream that just ends)."""
        if r.fault != "drop" or r.emitted < self.params.fault_drop_after_tokens:
            return False
        log(f"simulated fault: dropping the stream of request {r.rid} after {r.emitted} tokens")
        r.cancelled = True
        if request.transport is not None:
            request.transport.abort()
        return True

    async def _start(self, request: web.Request, r: Req, body: dict[str, Any],
                     resp: web.StreamResponse | None) -> web.StreamResponse | None:
        """Faults that strike first; then, for a stream (``resp``), its headers go out at once
        (as SGLang's server sends them before any token); then the request runs up to its
        first token. None when it goes on, else the response to return: an HTTP error, or for
        a stream the same response ended with an in-band error event (as SGLang does)."""
        early = await self._early_fault(r)
        if early is not None:
            return early
        if resp is not None:
            await resp.prepare(request)
        try:
            await self.run_request(r, body)
        except RuntimeError as e:
            r.cancelled = True
            if resp is None:
                return _openai_error(500, str(e), "InternalServerError")
            error = {"error": {"message": str(e), "type": "InternalServerError", "code": 500}}
            await resp.write(b"data: " + _compact(error).encode() + b"\n\n")
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
            return resp
        return None

    @staticmethod
    def _sse_response() -> web.StreamResponse:
        return web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})

    async def _wait_done(self, r: Req) -> None:
        while not r.done:
            r.event.clear()
            await r.event.wait()

    # -- /generate ------------------------------------------------------------------------
    async def handle_generate(self, request: web.Request) -> web.StreamResponse:
        arrival = self.now()
        try:
            body = await self._json(request)
        except BadRequest as e:
            return _generate_error(400, str(e))
        try:
            if "text" in body and body["text"] is not None:
                n_prompt = self._prompt_len(body["text"], "text")
            elif "input_ids" in body and body["input_ids"] is not None:
                n_prompt = self._prompt_len(body["input_ids"], "input_ids")
            else:
                raise BadRequest("one of text / input_ids is required")
            sp = body.get("sampling_params") or {}
            if not isinstance(sp, dict):
                raise BadRequest("sampling_params must be an object")
            r = self._new_req(body, n_prompt, sp.get("max_new_tokens", 128),
                              bool(sp.get("ignore_eos", False)), arrival)
        except BadRequest as e:  # SGLang: a stream fails in band, after HTTP 200
            if body.get("stream"):
                return await self._stream_only(request, _sse_error_event(str(e)))
            return _generate_error(400, str(e))
        if self._unpaired(r):
            r.cancelled = r.done = True
            return await self._reject_no_room(request, r)
        try:
            return await self._serve_generate(request, r, body)
        finally:
            if not r.done:  # client went away or the request failed: leave the batch
                r.cancelled = True

    def _unpaired(self, r: Req) -> bool:
        """A decode worker serves only requests the router paired with a prefill (a room)."""
        return self.role == "decode" and r.room is None

    async def _stream_only(self, request: web.Request, payload: bytes) -> web.StreamResponse:
        resp = self._sse_response()
        await resp.prepare(request)
        await resp.write(payload)
        await resp.write_eof()
        return resp

    async def _reject_no_room(self, request: web.Request, r: Req) -> web.StreamResponse:
        """SGLang's answer: 400, or for a stream an aborted chunk then [DONE]."""
        message = no_room_message(r.rid)
        if not r.streaming:
            return _generate_error(400, message)
        r.emitted = 0
        meta = self._meta(r, True)
        meta["finish_reason"] = {"type": "abort", "message": message, "status_code": 400,
                                 "err_type": None}
        del meta["forward_entry_time"]  # it never entered a forward batch
        chunk = {"text": "", "output_ids": [], "meta_info": meta}
        return await self._stream_only(
            request, b"data: " + _compact(chunk).encode() + b"\n\ndata: [DONE]\n\n")

    async def _serve_generate(self, request: web.Request, r: Req,
                              body: dict[str, Any]) -> web.StreamResponse:
        resp = self._sse_response() if body.get("stream") else None
        failed = await self._start(request, r, body, resp)
        if failed is not None:
            return failed
        if resp is None:
            await self._wait_done(r)
            if r.fault == "drop" and request.transport is not None:
                request.transport.abort()
            meta = self._meta(r, True)
            if body.get("return_logprob"):
                meta.update(self._logprobs(r, body))
            return web.json_response({
                "text": self._text(r, 0, r.emitted),
                "output_ids": self._ids(r, 0, r.emitted),
                "meta_info": meta,
            })
        return await self._stream_generate(request, r, resp)

    def _logprobs(self, r: Req, body: dict[str, Any]) -> dict[str, Any]:
        """Input logprobs come from whoever ran the prefill (in PD the router concatenates the
        prefill's list with the decode's, which is empty); output logprobs from the decoder."""
        if self.role == "decode":
            prompt_ids: list[int] = []
        elif isinstance(body.get("input_ids"), list):
            prompt_ids = body["input_ids"]
        else:
            prompt_ids = self.vocab.encode(str(body.get("text", "")))
        return {"input_token_logprobs": logprob_entries(prompt_ids, first_is_none=True),
                "output_token_logprobs": logprob_entries(self._ids(r, 0, r.emitted), False)}

    async def _stream_generate(self, request: web.Request, r: Req,
                               resp: web.StreamResponse) -> web.StreamResponse:
        incremental = self.args.incremental_streaming_output
        jtext, jid = self.vocab.jtext, self.vocab.jid
        text_buf = bytearray()
        ids_buf = bytearray()
        sent = 0
        # meta_info of the chunks before the last one, formatted without a dict and json.dumps
        # per chunk (the same keys and values as _meta(r, False); the first token is out, so
        # everything but the count is fixed)
        fixed = self._meta(r, False)
        del fixed["completion_tokens"], fixed["cached_tokens"], fixed["cached_tokens_details"], \
            fixed["dp_rank"]
        meta_fmt = _compact(fixed)[:-1].encode() + b',"completion_tokens":%d,' \
            b'"cached_tokens":0,"cached_tokens_details":null,"dp_rank":null%s}}\n\n'
        while True:
            n = r.emitted
            if n > sent:
                if incremental:
                    text_buf.clear()
                    ids_buf.clear()
                for i in range(sent, n):
                    k = self._token_piece(r, i)
                    text_buf += jtext[k]
                    if ids_buf:
                        ids_buf += b","
                    ids_buf += jid[k]
                sent = n
                fin = r.done and sent >= r.max_tokens
                first = r.first_sent_ts is None
                if first:
                    r.first_sent_ts = self.unix(self.now())
                if fin:
                    meta = _compact(self._meta(r, True, streamed=True)).encode() + b"}\n\n"
                else:
                    meta = meta_fmt % (n, b',"response_sent_to_client_ts":%r' % r.first_sent_ts
                                       if first else b"")
                chunk = b"".join((b'data: {"text":"', text_buf, b'","output_ids":[', ids_buf,
                                  b'],"meta_info":', meta))
                if not await self._send_chunk(request, resp, r, chunk):
                    return resp
                if fin:
                    break
                continue
            r.event.clear()
            await r.event.wait()
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    # -- /v1/completions ------------------------------------------------------------------
    async def handle_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._handle_openai(request, chat=False)

    async def handle_chat(self, request: web.Request) -> web.StreamResponse:
        return await self._handle_openai(request, chat=True)

    def _chat_prompt_len(self, messages: Any) -> int:
        """A plain chat template: one '<|role|>' header line per message, then the assistant's."""
        if not isinstance(messages, list) or not messages or not all(
                isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages):
            raise BadRequest("messages must be a non-empty list of {role, content} objects")
        text = "".join(f"<|{m.get('role', 'user')}|>\n{m['content']}\n" for m in messages)
        return self.vocab.count(text + "<|assistant|>\n")

    async def _handle_openai(self, request: web.Request, chat: bool) -> web.StreamResponse:
        arrival = self.now()
        try:
            body = await self._json(request)
            if chat:
                n_prompt = self._chat_prompt_len(body.get("messages"))
                max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
            else:
                if "prompt" not in body:
                    raise BadRequest("prompt is required")
                n_prompt = self._prompt_len(body["prompt"], "prompt")
                max_tokens = body.get("max_tokens")
            r = self._new_req(body, n_prompt, 16 if max_tokens is None else max_tokens,
                              bool(body.get("ignore_eos", False)), arrival)
        except BadRequest as e:
            return _openai_error(400, str(e))
        if self._unpaired(r):
            r.cancelled = r.done = True
            return _openai_error(400, no_room_message(r.rid))
        try:
            return await self._serve_openai(request, r, body, chat)
        finally:
            if not r.done:
                r.cancelled = True

    async def _serve_openai(self, request: web.Request, r: Req, body: dict[str, Any],
                            chat: bool) -> web.StreamResponse:
        resp = self._sse_response() if body.get("stream") else None
        failed = await self._start(request, r, body, resp)
        if failed is not None:
            return failed
        cid = ("chatcmpl-" if chat else "cmpl-") + r.rid
        created = int(time.time())
        name = body.get("model") or self.served_name
        if resp is None:
            await self._wait_done(r)
            text = self._text(r, 0, r.emitted)
            choice = ({"index": 0, "message": {"role": "assistant", "content": text}} if chat
                      else {"index": 0, "text": text})
            choice.update(logprobs=None, finish_reason=r.finish_type, matched_stop=None)
            return web.json_response({
                "id": cid, "object": "chat.completion" if chat else "text_completion",
                "created": created, "model": name, "choices": [choice], "usage": self._usage(r),
                "metadata": {"weight_version": "default", "weight_versions": [
                    {"version": "default", "start": 0, "end": r.emitted}]},
            })
        so = body.get("stream_options") or {}
        include_usage = bool(so.get("include_usage")) if isinstance(so, dict) else False
        obj = "chat.completion.chunk" if chat else "text_completion"
        envelope = _compact({"id": cid, "object": obj, "created": created, "model": name})[:-1]
        if chat:  # the first chunk announces the role, as OpenAI servers do
            await resp.write(f'data: {envelope},"choices":[{{"index":0,"delta":{{"role":'
                             f'"assistant","content":""}},"logprobs":null,"finish_reason":null}}]}}'
                             "\n\n".encode())
        head = envelope.encode() + (b',"choices":[{"index":0,"delta":{"content":"' if chat
                                    else b',"choices":[{"index":0,"text":"')
        close = b'"}' if chat else b'"'
        usage_null = b"" if chat else b',"usage":null'  # text completions: on every chunk
        tail_open = close + b',"logprobs":null,"finish_reason":null,"matched_stop":null}]' \
            + usage_null + b"}\n\n"
        jtext = self.vocab.jtext
        sent = 0
        while True:
            n = r.emitted
            if n > sent:
                piece = b"".join(jtext[self._token_piece(r, i)] for i in range(sent, n))
                sent = n
                fin = r.done and sent >= r.max_tokens
                tail = (close + b',"logprobs":null,"finish_reason":"' + r.finish_type.encode()
                        + b'","matched_stop":null}]' + usage_null + b"}\n\n") if fin \
                    else tail_open
                if not await self._send_chunk(request, resp, r, b"data: " + head + piece + tail):
                    return resp
                if fin:
                    break
                continue
            r.event.clear()
            await r.event.wait()
        if include_usage:
            usage = {"prompt_tokens": r.prompt_tokens, "total_tokens": r.prompt_tokens + r.emitted,
                     "completion_tokens": r.emitted, "reasoning_tokens": 0}
            await resp.write(b"data: " + _compact({
                "id": cid, "object": obj, "created": created, "model": name,
                "choices": [], "usage": usage}).encode() + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    def _usage(self, r: Req) -> dict[str, Any]:
        details = {"cached_tokens": 0} if self.args.enable_cache_report else None
        return {"prompt_tokens": r.prompt_tokens, "total_tokens": r.prompt_tokens + r.emitted,
                "completion_tokens": r.emitted, "prompt_tokens_details": details,
                "reasoning_tokens": 0, "completion_tokens_details": None}

    # -- info endpoints -------------------------------------------------------------------
    def is_ready(self) -> bool:
        return self.now() >= self.ready_at and self.params.fault != "never_healthy"

    async def handle_health(self, request: web.Request) -> web.Response:
        if not self.is_ready():
            return web.Response(status=503)  # SGLang: empty body while starting
        return web.Response(status=200)

    async def handle_model_info(self, request: web.Request) -> web.Response:
        cfg = self._config(Path(self.model_path))
        return web.json_response({
            "model_path": self.model_path, "served_model_name": self.served_name,
            "tokenizer_path": self.tokenizer_path, "is_generation": True,
            "preferred_sampling_params": None, "weight_version": "default",
            "load_format": "auto", "reasoning_parser": None, "tool_call_parser": None,
            "disaggregation_mode": self.role, "has_image_understanding": False,
            "has_audio_understanding": False, "model_type": cfg.get("model_type"),
            "architectures": cfg.get("architectures"),
        })

    def server_args(self) -> dict[str, Any]:
        """The parsed flags, as SGLang lists its ServerArgs."""
        d = {k: v for k, v in vars(self.args).items() if not k.startswith("sim_")}
        d["model_path"] = self.model_path
        d["tokenizer_path"] = self.tokenizer_path
        d["served_model_name"] = self.served_name
        d["context_length"] = self.context_length
        if d.get("mem_fraction_static") is None:
            d["mem_fraction_static"] = 0.88  # nominal: SGLang derives it from the GPU's memory
        return d

    def server_info(self) -> dict[str, Any]:
        d = self.server_args()
        d["max_total_num_tokens"] = self.max_total_tokens
        d["max_req_input_len"] = self.context_length - 1
        # what sglang-router shows as the worker's load_balance_method
        d["load_balance_method"] = ("follow_bootstrap_room" if self.role == "prefill"
                                    else "round_robin")
        return d

    async def handle_server_info(self, request: web.Request) -> web.Response:
        info = self.server_info()
        info.update({
            "version": VERSION, "simulated": True, "sim": dataclasses.asdict(self.params),
            # SGLang: the scheduler's view (its server args, memory, last throughput)
            "internal_states": [{**self.server_args(),
                                 "effective_max_running_requests_per_dp": self.max_running,
                                 "last_gen_throughput": float(self.metrics.gen_throughput())}],
        })
        return web.json_response(info)

    async def handle_models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{
            "id": self.served_name, "object": "model", "created": int(self.epoch),
            "owned_by": "sglang", "root": self.model_path, "parent": None,
            "max_model_len": self.context_length,
        }]})

    async def handle_trace(self, request: web.Request) -> web.Response:
        return web.json_response({"role": self.role,
                                  "requests": [r.trace() for r in self.trace_buf]})

    async def handle_load(self, request: web.Request) -> web.Response:
        return web.json_response([{"dp_rank": 0, "num_reqs": len(self.running) + len(
            self.waiting), "num_waiting_reqs": len(self.waiting) + len(self.sched.queue),
            "num_tokens": sum(r.ctx for r in self.running)}])

    async def handle_flush(self, request: web.Request) -> web.Response:
        if self.running or self.waiting or self.sched.has_work():
            return web.Response(status=400, text="Cache not flushed: requests are running.")
        return web.Response(text="Cache flushed.")

    async def handle_metrics(self, request: web.Request) -> web.Response:
        if not self.args.enable_metrics:
            return web.Response(status=404, text="metrics disabled (--enable-metrics)")
        return web.Response(body=self.metrics.render(),
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        g, p = app.router.add_get, app.router.add_post
        g("/health", self.handle_health)
        g("/health_generate", self.handle_health)
        g("/get_model_info", self.handle_model_info)
        g("/model_info", self.handle_model_info)
        g("/get_server_info", self.handle_server_info)
        g("/server_info", self.handle_server_info)
        g("/v1/models", self.handle_models)
        g("/get_load", self.handle_load)
        g("/metrics", self.handle_metrics)
        g("/sim/trace", self.handle_trace)
        g("/flush_cache", self.handle_flush)
        p("/flush_cache", self.handle_flush)
        p("/generate", self.handle_generate)
        p("/v1/completions", self.handle_completions)
        p("/v1/chat/completions", self.handle_chat)
        if self.role == "prefill":
            g("/sim/kv/{room}", self.handle_kv)
        return app

    def bootstrap_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/sim/kv/{room}", self.handle_kv)
        app.router.add_get("/health", self.handle_health)
        return app


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------


class _ProbeFilter(logging.Filter):
    """sglang-router probes workers with an HTTP/2 preface first; aiohttp answers 400 and logs a
    traceback per probe. Drop those records and say so once."""

    said = False

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, BadHttpMessage):
            if not _ProbeFilter.said:
                _ProbeFilter.said = True
                log("answered a non-HTTP/1.1 request (e.g. the router's HTTP/2 probe) with 400")
            return False
        return True


async def serve(args: argparse.Namespace, params: SimParams) -> None:
    logging.getLogger("aiohttp.server").addFilter(_ProbeFilter())
    server = SimServer(args, params)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runners: list[web.AppRunner] = []
    try:
        runner = web.AppRunner(server.app(), access_log=None, handle_signals=False,
                               shutdown_timeout=0.5)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, args.host, args.port, reuse_address=True).start()
        if server.role == "prefill":
            brunner = web.AppRunner(server.bootstrap_app(), access_log=None,
                                    shutdown_timeout=0.5)
            await brunner.setup()
            runners.append(brunner)
            await web.TCPSite(brunner, args.host, args.disaggregation_bootstrap_port,
                              reuse_address=True).start()
        boot = (f" bootstrap_port={args.disaggregation_bootstrap_port}"
                if server.role == "prefill" else "")
        log(f"ready role={server.role} host={args.host} port={args.port}{boot} "
            f"tp={args.tp_size} pp={args.pp_size} prefill_pp={args.disaggregation_prefill_pp} "
            f"chunked_prefill_size={args.chunked_prefill_size} speedup={params.speedup:g} "
            f"model={server.model_path} pid={os.getpid()}")
        if params.fault == "crash_at_start":
            await asyncio.sleep(max(params.startup_delay_s, 0.2))
            log("simulated fault: crash during start-up (exit code 3)")
            os._exit(3)
        await stop.wait()
        log("shutting down")
    finally:
        await server.stop()
        for r in reversed(runners):
            try:
                await asyncio.wait_for(r.cleanup(), 1.0)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001
                pass


def main(argv: list[str] | None = None) -> int:
    args, params, unknown = parse_args(argv)
    if unknown:
        log(f"ignoring flags the simulator does not model: {' '.join(unknown)}")
    try:
        asyncio.run(serve(args, params))
    except KeyboardInterrupt:
        pass
    except OSError as e:
        print(f"pytest-pd sim: cannot serve on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 1
    return 0
