"""A whole benchmark run evaluated on the timing model as a pure discrete-event simulation (no
clock, no I/O) — any number of prefill and decode servers behind a modelled router, closed or open
loop, any lengths per request — and the seed workload and measured table the model's defaults are
calibrated to."""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from pytest_pd.sim.model import (
    PrefillScheduler,
    ServerShape,
    SimParams,
    decode_step_time,
    kv_pool_tokens,
    kv_transfer_time,
    max_running,
)
from pytest_pd.sim.prefix_cache import PrefixCache
from pytest_pd.sim.routing import POLLED_POLICIES, Polled, Router, Topology


@dataclass
class _Req:
    idx: int
    arrival: float
    input_len: int
    output_len: int
    send: float = -1.0
    first: float = -1.0
    finish: float = -1.0
    emitted: int = 0
    prefill: int = 0
    decode: int = 0


@dataclass
class _Decode:
    """A decode server's batch, kept so that a step costs the same whatever its size: requests
    are not touched each step; each is filed under the step that emits its last token."""

    shape: ServerShape
    limit: int
    waiting: deque[_Req] = field(default_factory=deque)  # KV arrived, not yet admitted
    # (step emitting its last token, order of admission, request) for each running request
    ends: list[tuple[int, int, _Req]] = field(default_factory=list)
    steps: int = 0  # steps done so far
    admitted: int = 0
    context: int = 0  # prompt + generated tokens of the running requests
    active: bool = False
    emitted: deque[tuple[float, int]] = field(default_factory=deque)  # (step end, tokens), if polled

    def admit(self, r: _Req) -> None:
        heapq.heappush(self.ends, (self.steps + r.output_len - r.emitted, self.admitted, r))
        self.admitted += 1
        self.context += r.input_len + r.emitted

    def step_done(self) -> list[_Req]:
        """Every running request emitted a token: the ones that emitted their last, in order of
        admission."""
        self.steps += 1
        self.context += len(self.ends)
        done = []
        while self.ends and self.ends[0][0] <= self.steps:
            r = heapq.heappop(self.ends)[2]
            r.emitted = r.output_len
            self.context -= r.input_len + r.output_len
            done.append(r)
        return done


def simulate(
    params: SimParams,
    topology: Topology,
    input_lens: Sequence[int],
    output_lens: Sequence[int],
    *,
    concurrency: int | None = None,
    arrivals: Sequence[float] | None = None,
    seed: int = 0,
    prefix_keys: Sequence[Sequence[int]] | None = None,
    context_length: int = 65536,
    turns: int = 1,
    think_s: float = 0.0,
    warmup: Sequence[tuple[int, int]] = (),
) -> dict[str, Any]:
    """Evaluate a benchmark run on ``topology``: request ``i`` has ``input_lens[i]`` prompt and
    ``output_lens[i]`` output tokens and is due at ``arrivals[i]`` (model seconds; default: all
    at 0, a closed loop); at most ``concurrency`` are in flight (default: no cap), the rest wait
    in arrival order and are sent as earlier ones complete, as bench_serving's client does.

    Each request goes to a prefill server (FIFO chunked prefill, pipeline stages) and a decode
    server picked by the router policy; its KV moves to the decode when its prefill is done, its
    first token comes then, and it joins that decode's running batch at the next step boundary.
    Returns :func:`summarize`'s means and per-request times (``send``, ``ttft``, ``latency``,
    ``finish``), in model seconds divided by ``params.speedup``. ``seed`` draws the random
    policies' choices (one run of a random router is one draw); ``servers`` says which (prefill,
    decode) pair each request went to, in request order.

    ``prefix_keys`` (per request, the chained keys of its prompt's ``BLOCK``-token blocks, as
    :func:`pytest_pd.sim.prefix_cache.block_keys` makes them) turns on each prefill server's prefix
    cache, as the simulated server keeps it: a request's cached blocks are matched when it
    arrives and need no compute, its blocks are cached when its prefill is done, least recently
    used evicted beyond the KV pool; ``cache_hit_rate`` is then the cached share of the prompt
    tokens.

    A router policy that scores polled loads (:data:`pytest_pd.sim.routing.POLLED_POLICIES`)
    reads each server's load every ``topology.poll_interval_s`` (model seconds), the first at a
    phase drawn from ``seed``: a prefill its queue, a decode its running and waiting requests, KV
    use and the tokens it emitted over the last ``topology.gen_window_s``. There the ``warmup``
    requests ((prompt, output) lengths; warm-up ``i`` sends the run's prompt ``i % n``) go first,
    one after the other, and the run starts when the last is done: what the router's last poll
    before the run saw may be one of them, and its prefix trees hold their prompts (the servers'
    prefix caches do not: they are flushed after the warm-up).

    ``turns`` > 1: requests form conversations of that many turns (request ``i`` is turn
    ``i % turns`` of conversation ``i // turns``); a conversation holds its place under
    ``concurrency`` from its first turn, due at its arrival, to its last, and each later turn is
    sent ``think_s`` after the previous one completes (its lengths are the whole prompt sent).
    """
    n = len(input_lens)
    if len(output_lens) != n or (arrivals is not None and len(arrivals) != n):
        raise ValueError("input_lens, output_lens and arrivals must have one entry per request")
    due = list(arrivals) if arrivals is not None else [0.0] * n
    reqs = [_Req(i, float(due[i]), int(input_lens[i]), int(output_lens[i])) for i in range(n)]
    if prefix_keys is not None and len(prefix_keys) != n:
        raise ValueError("prefix_keys must have one entry per request")
    prefills = [PrefillScheduler(params, s.tp, s.pp, s.chunked_prefill_size) for s in topology.prefill]
    caches = [
        PrefixCache(kv_pool_tokens(params, s, context_length)) if prefix_keys is not None else None
        for s in topology.prefill
    ]
    prefill_wake = [False] * len(prefills)
    decodes = [_Decode(s, max_running(params, s)) for s in topology.decode]
    rng = random.Random(seed)
    to_prefill = Router(len(prefills), topology.policies[0], rng, topology.thresholds)
    to_decode = Router(len(decodes), topology.policies[1], rng, topology.thresholds)
    prefill_held = topology.policies[0] in POLLED_POLICIES  # the prefill's load ends with its prefill
    poll_every, window = topology.poll_interval_s, topology.gen_window_s
    pools = [kv_pool_tokens(params, s, context_length) for s in topology.decode]
    cap = n if concurrency is None else max(1, concurrency)
    queued: deque[_Req] = deque()  # due, waiting for a free slot
    in_flight = 0
    events: list[tuple[float, int, str, Any]] = []
    seq = 0

    def push(t: float, kind: str, data: Any = None) -> None:
        nonlocal seq
        heapq.heappush(events, (t, seq, kind, data))
        seq += 1

    def keys_of(r: _Req) -> Sequence[int]:
        """The prompt's block keys (a warm-up request sends the run's prompt ``i % n``)."""
        if prefix_keys is None or not n:
            return ()
        return prefix_keys[r.idx if r.idx >= 0 else (-1 - r.idx) % n]

    def send(r: _Req, t: float) -> None:
        r.send = t
        keys = keys_of(r)
        p = r.prefill = to_prefill.pick(r.input_len, keys)
        r.decode = to_decode.pick(r.input_len, keys)
        cache = caches[p] if r.idx >= 0 else None  # the caches are flushed after the warm-up
        cached = cache.match(keys, r.input_len) if cache is not None else 0
        prefills[p].submit((r, p), r.input_len, cached)
        wake_prefill(p, t)

    def complete(r: _Req, t: float) -> None:
        nonlocal in_flight
        r.finish = t
        if not prefill_held:
            to_prefill.done(r.prefill)
        to_decode.done(r.decode)
        if r.idx < 0:  # a warm-up request: the next, or the run
            if -r.idx < len(warm):
                send(warm[-r.idx], t)
            else:
                start_run(t)
            return
        if (r.idx + 1) % turns and r.idx + 1 < n:  # the conversation goes on in this place
            push(t + think_s, "turn", reqs[r.idx + 1])
            return
        if queued:  # the place goes to the next one waiting
            send(queued.popleft(), t)
        else:
            in_flight -= 1

    def wake_prefill(p: int, t: float) -> None:
        # a wake event (not an immediate batch) so that all sends at the same instant are queued
        # before the batch forms
        if prefills[p].has_work() and not prefill_wake[p]:
            prefill_wake[p] = True
            push(max(t, prefills[p].stage0_free_at), "prefill_wake", p)

    def run_prefill(p: int, t: float) -> None:
        sched = prefills[p]
        if not sched.has_work():
            return
        if t < sched.stage0_free_at:
            wake_prefill(p, t)
            return
        batch = sched.next_batch(t)
        assert batch is not None
        for r, _ in batch.finished:
            if caches[p] is not None and r.idx >= 0:
                push(batch.done_at, "prefilled", (p, r))
            if prefill_held:
                push(batch.done_at, "prefill_released", r)
            prefill_pp = decodes[r.decode].shape.prefill_pp
            push(batch.done_at + kv_transfer_time(params, r.input_len, prefill_pp), "kv_arrive", r)
        wake_prefill(p, t)

    def start_step(d: _Decode, t: float) -> None:
        while d.waiting and len(d.ends) < d.limit:
            d.admit(d.waiting.popleft())
        batch = len(d.ends)
        if not batch:
            d.active = False
            return
        d.active = True
        push(t + decode_step_time(params, batch, d.context / batch, d.shape.tp), "step_end", d)

    def poll(t: float) -> None:
        to_prefill.poll([Polled(waiting=len(s.queue)) for s in prefills])
        loads = []
        for d, pool in zip(decodes, pools, strict=True):
            while d.emitted and d.emitted[0][0] < t - window:
                d.emitted.popleft()
            rate = sum(n for _, n in d.emitted) / window
            loads.append(Polled(len(d.ends), len(d.waiting), d.context / pool, rate))
        to_decode.poll(loads)

    def start_run(t: float) -> None:
        for r in reqs[::turns]:  # a conversation's first turn (every request when single-turn)
            r.arrival += t
            push(r.arrival, "due", r)

    warm = [_Req(-1 - i, 0.0, a, b) for i, (a, b) in enumerate(warmup)] if topology.polled else []
    if warm:
        send(warm[0], 0.0)
    else:
        start_run(0.0)
    if topology.polled:
        push(rng.uniform(0.0, poll_every), "poll")
    while events:
        t, _, kind, data = heapq.heappop(events)
        if kind == "poll":
            poll(t)
            if any(k != "poll" for *_, k, _d in events):
                push(t + poll_every, "poll")
        elif kind == "prefill_released":
            to_prefill.done(data.prefill)
        elif kind == "due":
            if in_flight < cap:
                in_flight += 1
                send(data, t)
            else:
                queued.append(data)
        elif kind == "turn":
            send(data, t)
        elif kind == "prefilled":  # its blocks are cached once its prefill is done
            p, r = data
            cast(PrefixCache, caches[p]).insert(keys_of(r))
        elif kind == "prefill_wake":
            prefill_wake[data] = False
            run_prefill(data, t)
        elif kind == "kv_arrive":
            r = data
            r.first = t
            r.emitted = 1
            if r.emitted >= r.output_len:
                complete(r, t)
                continue
            d = decodes[r.decode]
            d.waiting.append(r)
            if not d.active:
                start_step(d, t)
        elif kind == "step_end":
            if topology.polled:
                data.emitted.append((t, len(data.ends)))
            for r in data.step_done():
                complete(r, t)
            start_step(data, t)

    out = summarize(reqs, scale=1.0 / params.speedup)
    out["servers"] = [(r.prefill, r.decode) for r in reqs]  # the router's choice per request
    if prefix_keys is not None:
        hits = sum(c.hit_tokens for c in caches if c is not None)
        total = hits + sum(c.computed_tokens for c in caches if c is not None)
        out["cache_hit_rate"] = hits / total if total else 0.0
    return out


def simulate_closed_loop(
    params: SimParams,
    prefill: ServerShape,
    decode: ServerShape,
    input_len: int,
    output_len: int,
    concurrency: int,
    num_requests: int,
) -> dict[str, Any]:
    """:func:`simulate` of a closed-loop benchmark of fixed lengths against one prefill and one
    decode server: ``concurrency`` clients, each sending its next request as soon as its previous
    one completes, until ``num_requests`` were sent. Means as bench_serving reports them:
    ``mean_ttft_s``, ``output_throughput`` (tok/s, total output tokens / (last completion - first
    send)), ``mean_tpot_ms``, ``mean_e2e_latency_s``, ``duration_s``."""
    return simulate(
        params,
        Topology((prefill,), (decode,)),
        [input_len] * num_requests,
        [output_len] * num_requests,
        concurrency=concurrency,
    )


def summarize(reqs: Sequence[Any], scale: float = 1.0) -> dict[str, Any]:
    """Means over finished requests (objects with send, first, finish, output_len); every time is
    multiplied by ``scale`` (1/speedup: model seconds -> wall seconds of a simulated cluster)."""
    done = [r for r in reqs if r.finish >= 0]
    if not done:
        return {
            "requests": [],
            "mean_ttft_s": 0.0,
            "output_throughput": 0.0,
            "mean_tpot_ms": 0.0,
            "mean_e2e_latency_s": 0.0,
            "duration_s": 0.0,
        }
    per = [
        {
            "ttft": (r.first - r.send) * scale,
            "latency": (r.finish - r.send) * scale,
            "output_len": r.output_len,
            "send": r.send * scale,
            "finish": r.finish * scale,
        }
        for r in done
    ]
    duration = (max(r.finish for r in done) - min(r.send for r in done)) * scale
    tpots = [(p["latency"] - p["ttft"]) / (p["output_len"] - 1) for p in per if p["output_len"] > 1]
    total_out = sum(p["output_len"] for p in per)
    return {
        "requests": per,
        "mean_ttft_s": sum(p["ttft"] for p in per) / len(per),
        "output_throughput": total_out / duration if duration > 0 else 0.0,
        "mean_tpot_ms": 1000.0 * sum(tpots) / len(tpots) if tpots else 0.0,
        "mean_e2e_latency_s": sum(p["latency"] for p in per) / len(per),
        "duration_s": duration,
    }


SEED_WORKLOAD = {"input_len": 6000, "output_len": 1000, "concurrency": 16, "num_requests": 32}
"""The seed's perf_bench run."""

SEED_TOPOLOGIES = {
    "pp2": (ServerShape(tp=4, pp=2, chunked_prefill_size=16384), ServerShape(tp=8, prefill_pp=2)),
    "tp8": (ServerShape(tp=8, pp=1, chunked_prefill_size=16384), ServerShape(tp=8, prefill_pp=1)),
}
"""(prefill, decode) shapes of the seed's two topologies."""

SEED_TABLE = {
    "pp2": {
        "mean_ttft_s": 5.01,
        "output_throughput": 492.9,
        "mean_tpot_ms": 26.4,
        "mean_e2e_latency_s": 31.35,
    },
    "tp8": {
        "mean_ttft_s": 3.59,
        "output_throughput": 488.7,
        "mean_tpot_ms": 27.6,
        "mean_e2e_latency_s": 31.15,
    },
}
"""The seed's measured results (H20, DeepSeek-V3.2)."""
