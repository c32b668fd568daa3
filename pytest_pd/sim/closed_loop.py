"""A whole benchmark run evaluated on the timing model as a pure discrete-event simulation (no
clock, no I/O), and the seed workload and measured table the model's defaults are calibrated to."""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pytest_pd.sim.model import (
    PrefillScheduler,
    ServerShape,
    SimParams,
    decode_step_time,
    kv_transfer_time,
    max_running,
)


@dataclass
class _Req:
    idx: int
    client: int
    send: float
    input_len: int
    output_len: int
    first: float = -1.0
    finish: float = -1.0
    emitted: int = 0


def simulate_closed_loop(
    params: SimParams,
    prefill: ServerShape,
    decode: ServerShape,
    input_len: int,
    output_len: int,
    concurrency: int,
    num_requests: int,
) -> dict[str, Any]:
    """Evaluate a closed-loop benchmark against one prefill and one decode server.

    ``concurrency`` clients each send their next request as soon as their previous one completes,
    until ``num_requests`` were sent. Returns per-request ``ttft``/``latency`` and the
    bench_serving-style means: ``mean_ttft_s``, ``output_throughput`` (tok/s, total output tokens /
    (last completion - first send)), ``mean_tpot_ms``, ``mean_e2e_latency_s``, ``duration_s``.
    Times are model seconds divided by ``params.speedup`` (what a simulated cluster shows).
    """
    sched = PrefillScheduler(params, prefill.tp, prefill.pp, prefill.chunked_prefill_size)
    limit = max_running(params, decode)
    events: list[tuple[float, int, str, Any]] = []
    seq = 0

    def push(t: float, kind: str, data: Any = None) -> None:
        nonlocal seq
        heapq.heappush(events, (t, seq, kind, data))
        seq += 1

    reqs: list[_Req] = []
    sent = 0

    def send(client: int, t: float) -> None:
        nonlocal sent
        r = _Req(sent, client, t, input_len, output_len)
        reqs.append(r)
        sent += 1
        push(t, "arrive", r)

    for c in range(min(concurrency, num_requests)):
        send(c, 0.0)

    waiting: deque[_Req] = deque()  # KV arrived at decode, not yet admitted
    running: list[_Req] = []
    step_active = False
    prefill_wake_pending = False

    def complete(r: _Req, t: float) -> None:
        r.finish = t
        if sent < num_requests:
            send(r.client, t)

    def wake_prefill(t: float) -> None:
        # a wake event (not an immediate batch) so that all arrivals at the same instant are queued
        # before the batch forms
        nonlocal prefill_wake_pending
        if sched.has_work() and not prefill_wake_pending:
            prefill_wake_pending = True
            push(max(t, sched.stage0_free_at), "prefill_wake")

    def run_prefill(t: float) -> None:
        if not sched.has_work():
            return
        if t < sched.stage0_free_at:
            wake_prefill(t)
            return
        batch = sched.next_batch(t)
        assert batch is not None
        for r in batch.finished:
            push(batch.done_at + kv_transfer_time(params, r.input_len, decode.prefill_pp), "kv_arrive", r)
        wake_prefill(t)

    def start_step(t: float) -> None:
        nonlocal step_active
        while waiting and len(running) < limit:
            running.append(waiting.popleft())
        if not running:
            step_active = False
            return
        mean_ctx = sum(r.input_len + r.emitted for r in running) / len(running)
        step_active = True
        push(t + decode_step_time(params, len(running), mean_ctx, decode.tp), "step_end")

    while events:
        t, _, kind, data = heapq.heappop(events)
        if kind == "arrive":
            sched.submit(data, data.input_len)
            wake_prefill(t)
        elif kind == "prefill_wake":
            prefill_wake_pending = False
            run_prefill(t)
        elif kind == "kv_arrive":
            r = data
            r.first = t
            r.emitted = 1
            if r.emitted >= r.output_len:
                complete(r, t)
                continue
            waiting.append(r)
            if not step_active:
                start_step(t)
        elif kind == "step_end":
            still: list[_Req] = []
            for r in running:
                r.emitted += 1
                if r.emitted >= r.output_len:
                    complete(r, t)
                else:
                    still.append(r)
            running[:] = still
            start_step(t)

    return summarize(reqs, scale=1.0 / params.speedup)


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
