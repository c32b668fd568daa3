"""One simulated worker: its parts wired together, which requests it admits, and a request's
life cycle up to its first token by role (``--disaggregation-mode``):

  null     unified server: local chunked prefill, then the local decode batch.
  prefill  chunked prefill only; answers with one token after the compute and marks the
           request's KV ready for its ``bootstrap_room``.
  decode   waits for the room's KV at ``bootstrap_host:bootstrap_port``, adds the KV transfer
           time, emits the first token, then one token per decode step of the running batch.
"""

from __future__ import annotations

import argparse
import itertools
import uuid
from collections import deque
from typing import Any

from pytest_pd.sim import model, model_dir
from pytest_pd.sim.clock import Clock
from pytest_pd.sim.kv import KvFetcher, KvRooms
from pytest_pd.sim.metrics import SimMetrics
from pytest_pd.sim.model import SimParams
from pytest_pd.sim.prefix_cache import PrefixCache, block_keys
from pytest_pd.sim.request import BadRequest, Req
from pytest_pd.sim.scheduler import Scheduler
from pytest_pd.sim.vocab import Vocab

TRACE_KEEP = 4096


def no_room_message(rid: str) -> str:
    return f"Invalid request: Disaggregated request received without bootstrap room id. req.rid='{rid}'"


class SimWorker:
    def __init__(self, args: argparse.Namespace, params: SimParams) -> None:
        self.args = args
        self.params = params
        self.role = args.disaggregation_mode
        self.files = model_dir.locate(args)
        self.vocab = Vocab(self.files.tokenizer_json, params.seed)
        self.context_length = args.context_length or self.files.context_length() or 65536
        self.clock = Clock(params.speedup)
        self.ready_at = 0.0
        self.out_offset = itertools.count(0, 7919)
        self.admitted = 0
        self.trace_buf: deque[Req] = deque(maxlen=TRACE_KEEP)
        shape = model.ServerShape(
            tp=args.tp_size,
            pp=args.pp_size,
            chunked_prefill_size=args.chunked_prefill_size,
            prefill_pp=args.disaggregation_prefill_pp,
            max_running_requests=args.max_running_requests,
        )
        pool = model.kv_pool_tokens(params, shape, self.context_length)
        self.max_total_tokens = args.max_total_tokens or pool
        caches = self.role != "decode" and not args.disable_radix_cache
        self.prefix_cache = PrefixCache(self.max_total_tokens) if caches else None
        self.metrics = self._make_metrics()
        self.scheduler = Scheduler(params, shape, self.clock, self.metrics)
        self.kv_rooms = KvRooms(params, args.pp_size, self.clock, self.metrics)
        self.kv_fetcher = KvFetcher(
            params,
            args.disaggregation_prefill_pp,
            args.disaggregation_bootstrap_port,
            self.clock,
            self.metrics,
        )

    def _make_metrics(self) -> SimMetrics:
        # the gauges read the live state when scraped, after __init__ built the parts
        used = lambda: float(self.scheduler.used_tokens())  # noqa: E731
        gauges = {
            "num_running_reqs": lambda: len(self.scheduler.running),
            "num_queue_reqs": lambda: self.scheduler.queued(),
            "num_used_tokens": used,
            "token_usage": lambda: used() / self.max_total_tokens,
            "cache_hit_rate": lambda: self.prefix_cache.hit_rate() if self.prefix_cache else 0.0,
            "num_prefill_bootstrap_queue_reqs": lambda: 0,
            "num_prefill_inflight_queue_reqs": lambda: len(self.kv_rooms.waiters),
            "num_decode_prealloc_queue_reqs": lambda: 0,
            "num_decode_transfer_queue_reqs": lambda: self.kv_fetcher.waiting,
        }
        static = {
            "max_total_num_tokens": self.max_total_tokens,
            "context_len": self.context_length,
            "page_size": self.args.page_size,
        }
        return SimMetrics(self.files.served_name, self.params.speedup, self.role, gauges, static)

    # -- life cycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Call from the running event loop."""
        self.clock.start()
        self.ready_at = self.clock.epoch + max(0.0, self.params.startup_delay_s)
        self.scheduler.start()
        if self.role == "decode":
            self.kv_fetcher.start()

    async def stop(self) -> None:
        await self.scheduler.stop()
        await self.kv_fetcher.stop()

    def is_ready(self) -> bool:
        return self.clock.now() >= self.ready_at and self.params.fault != "never_healthy"

    # -- admission -------------------------------------------------------------------------
    def prompt_len(self, prompt: Any, what: str) -> int:
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
            prompt = prompt[0]
        if isinstance(prompt, str):
            return self.vocab.count(prompt)
        if isinstance(prompt, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in prompt):
            return len(prompt)
        raise BadRequest(f"{what} must be a string or a list of token ids")

    def new_req(
        self, body: dict[str, Any], prompt_tokens: int, max_tokens: Any, ignore_eos: bool, arrival: float
    ) -> Req:
        """Admit a request (BadRequest if it cannot be served); it counts from here on."""
        if prompt_tokens <= 0:
            raise BadRequest("empty prompt")
        if prompt_tokens >= self.context_length:
            raise BadRequest(
                f"The input ({prompt_tokens} tokens) is longer than the model's context length "
                f"({self.context_length} tokens)."
            )
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
        given = body.get("rid")
        rid = given if isinstance(given, str) else uuid.uuid4().hex
        r = Req(rid, room, prompt_tokens, n, finish, arrival, next(self.out_offset) % len(self.vocab.ids))
        r.streaming = bool(body.get("stream"))
        ids = body.get("input_ids", body.get("prompt"))
        if isinstance(ids, list) and ids and isinstance(ids[0], int):
            r.prompt_head = ids[:8]  # lets tests match a client's request to its trace
        if model.fault_strikes(self.params, self.admitted):
            r.fault = self.params.fault
        self.admitted += 1
        if self.prefix_cache is not None:
            tokens = self._prompt_tokens(body)
            if tokens:
                r.cache_keys = block_keys(tokens)
                r.cached = self.prefix_cache.match(r.cache_keys, prompt_tokens)
        self.metrics.request_arrived(r.streaming, prompt_tokens, r.cached)
        self.trace_buf.append(r)
        return r

    def _prompt_tokens(self, body: dict[str, Any]) -> list[int] | None:
        """The prompt's token ids (text prompts encoded) for the prefix cache; None for a chat."""
        prompt = body.get("input_ids", body.get("prompt", body.get("text")))
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
            prompt = prompt[0]
        if isinstance(prompt, str):
            return self.vocab.encode(prompt)
        return prompt if isinstance(prompt, list) else None

    def _prefilled(self, r: Req) -> None:
        """``r``'s prefill is done: its blocks are cached (its keys are dropped: the trace keeps
        thousands of requests)."""
        if self.prefix_cache is not None and r.cache_keys:
            self.prefix_cache.insert(r.cache_keys)
        r.cache_keys = None

    def unpaired(self, r: Req) -> bool:
        """A decode worker serves only requests the router paired with a prefill (a room)."""
        return self.role == "decode" and r.room is None

    # -- a request's life cycle ------------------------------------------------------------
    async def run_request(self, r: Req, body: dict[str, Any]) -> None:
        """Drive ``r`` until its first token is emitted (later tokens come from the decode
        loop). RuntimeError when the KV bootstrap fails."""
        scheduler = self.scheduler
        if self.role == "prefill":
            done = await scheduler.run_prefill(r)
            r.prefill_done = done
            self._prefilled(r)
            if r.room is not None:
                self.kv_rooms.ready(str(r.room), r.prompt_tokens, done)
            r.max_tokens = 1
            r.finish_type = "length"
            now = self.clock.now()
            r.emit(now)
            self.metrics.first_token(r.streaming, now - r.arrival)
            scheduler.finished(r, now)
            return
        host, port = body.get("bootstrap_host"), body.get("bootstrap_port")
        if self.role == "decode" and r.room is not None and host:
            await self.kv_fetcher.fetch(r, str(host), port)
        else:
            r.prefill_done = await scheduler.run_prefill(r)
            r.kv_arrived = r.prefill_done
            self._prefilled(r)
        now = self.clock.now()
        r.emit(now)
        self.metrics.first_token(r.streaming, now - r.arrival)
        if r.done:
            scheduler.finished(r, now)
        else:
            scheduler.join_decode(r)
