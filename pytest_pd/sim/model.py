"""Timing model of a simulated SGLang prefill/decode cluster.

Pure: no I/O, no clock, no asyncio. Every function takes times in *model seconds* (what the real
hardware would take); the server divides them by ``SimParams.speedup`` when it paces tokens, and
:mod:`pytest_pd.sim.closed_loop` evaluates a whole benchmark run as a discrete-event simulation.

The model, in one paragraph: a prefill server runs one FIFO chunked-prefill scheduler. Each forward
batch takes requests from the head of the queue up to ``chunked_prefill_size`` tokens (the last one
possibly split into a chunk, continued in the next batch). A batch's compute is a linear term per
token plus an attention term per (new token x context token) plus a fixed per-batch cost, scaled by
the tensor-parallel size. With pipeline parallelism each of the ``pp`` stages does ``1/pp`` of the
work plus an activation hand-off; batches flow through the stages one after another, so the
pipeline fills (latency = pp stages) while successive batches overlap (throughput = one stage).
When a request's last chunk leaves the last stage its KV cache is sent to decode: a fixed bootstrap
latency per prefill PP rank plus bytes / bandwidth. A decode server runs one loop: each step emits
one token to every running request and is bound by memory or by compute, roofline-style: it reads
the weights its batch needs (the dense part always; of a mixture of experts, the share of experts
that ``B`` tokens route to, ``1 - (1 - k/E)**B``) split over the TP ranks, plus every running
request's KV cache, at an effective HBM bandwidth, or computes ``B`` tokens' FLOPs at an effective
rate, whichever takes longer, plus a fixed per-step cost. New requests join at step boundaries, up
to ``max_running_requests`` (the rest wait).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SimParams:
    """Parameters of the simulated worker. Each field ``foo_bar`` is the CLI flag ``--sim-foo-bar``.

    Defaults are calibrated so that ``simulate_closed_loop`` reproduces the seed's H20 table
    (DeepSeek-V3.2, 6000 in / 1000 out, concurrency 16, 32 requests) for both PP2 and TP8 prefill.
    Times are model seconds: what the real cluster would take, before dividing by ``speedup``.
    """

    speedup: float = 1.0
    """Divides every model time (compute, transfer, decode steps): 10 = ten times faster."""

    # ---- prefill compute -------------------------------------------------------------------
    reference_tp: int = 8
    """TP size at which the compute rates below are given (other sizes scale with tp_scaling)."""
    tp_scaling: float = 0.74
    """Exponent a: going from reference_tp to tp GPUs makes compute (tp/reference_tp)**a faster."""
    prefill_tokens_per_s: float = 18100.0
    """Linear prefill throughput at reference_tp, pp=1 (tokens/s), excluding attention."""
    prefill_attn_s_per_token2: float = 2.25e-9
    """Attention cost at reference_tp: seconds per (new token x context token it attends to)."""
    prefill_batch_overhead_s: float = 0.212
    """Fixed cost of one prefill forward batch (scheduling, kernel launches), seconds."""
    pp_stage_overhead_s: float = 0.04
    """Per pipeline stage, per batch, with pp > 1: activation hand-off and scheduling, seconds."""

    # ---- KV transfer (prefill -> decode) ---------------------------------------------------
    kv_bytes_per_token: float = 70272.0
    """KV cache size of one token over all layers, bytes (DeepSeek-V3 MLA: 61 x 576 x 2)."""
    kv_bandwidth_gb_s: float = 20.0
    """Effective prefill -> decode transfer bandwidth, GB/s (1e9 bytes/s)."""
    kv_bootstrap_s: float = 0.71
    """Fixed handshake latency per request and per prefill PP rank, seconds."""

    # ---- decode (roofline: memory or compute, whichever takes longer) ------------------------
    decode_step_base_s: float = 0.005
    """Fixed time of one decode step whatever the batch (scheduling, kernel launches, the TP
    all-reduces' latency), seconds."""
    weights_dense_gb: float = 18.0
    """GB of weights every decode step reads whatever the batch: attention, dense layers, shared
    experts, embeddings (DeepSeek-V3 in FP8: ~18)."""
    weights_experts_gb: float = 653.0
    """GB of all routed experts of a mixture-of-experts model (DeepSeek-V3 in FP8: ~653); 0 for a
    dense model. A step reads the share its batch routes to."""
    experts_total: int = 256
    """Routed experts per MoE layer (E)."""
    experts_per_token: int = 8
    """Routed experts each token uses (k): B tokens touch ``1 - (1 - k/E)**B`` of them."""
    hbm_gb_s: float = 4000.0
    """HBM bandwidth of one GPU, GB/s (H20: 4.0 TB/s)."""
    decode_memory_efficiency: float = 0.437
    """Share of ``hbm_gb_s`` a decode step achieves (fitted to the seed)."""
    kv_read_per_rank: bool = True
    """Every TP rank reads the whole KV cache of the batch (MLA's single latent head, as in
    DeepSeek); false: each reads 1/tp of it (attention heads split across ranks)."""
    decode_gflop_per_token: float = 74.0
    """FLOPs of one decoded token's matrix multiplies (2 x active parameters: DeepSeek-V3's 37 B),
    GFLOP."""
    decode_attn_mflop_per_context_token: float = 17.0
    """Attention FLOPs of one decoded token per token of its context, all layers, MFLOP
    (DeepSeek-V3's absorbed MLA: 61 layers x 128 heads x 2 x (576 + 512) ~ 17); split over TP."""
    gpu_tflops: float = 148.0
    """Dense throughput of one GPU, TFLOP/s (H20: 148 in BF16)."""
    decode_compute_efficiency: float = 0.5
    """Share of ``gpu_tflops`` a decode kernel achieves when it is compute-bound."""
    default_max_running_requests: int = 256
    """Decode batch limit when --max-running-requests is not given."""
    gpu_memory_gb: float = 141.0
    """Memory of one GPU, GB (H20-3e: 141; the seed's 16 requests x 7000 tokens of DeepSeek-V3.2
    on TP8 would not fit in 96). The planner's memory check: weights over TP x PP plus the KV
    cache must fit in ``--mem-fraction-static`` of it; the simulated servers do not enforce it."""

    # ---- behaviour -------------------------------------------------------------------------
    arrival_window_s: float = 0.02
    """Wall seconds (not scaled): requests reaching an idle prefill within this window of the
    first batch together, as if they arrived at once (absorbs client/router dispatch jitter,
    which the speedup would magnify). The batch still starts at the first one's arrival."""
    startup_delay_s: float = 0.0
    """Wall seconds (not scaled) during which /health answers 503 after start."""
    eos_after_tokens: int = 0
    """Without ignore_eos, stop with finish_reason 'stop' after this many tokens (0 = never)."""
    bootstrap_timeout_s: float = 300.0
    """Wall seconds a decode request / bootstrap long-poll waits for the prefill's KV (then 504)."""
    seed: int = 0
    """Seed of the generated output token ids."""
    ignore_continuous_usage: bool = False
    """Send no per-chunk usage on /v1/* streams even when ``stream_options.continuous_usage_stats``
    asks for it: what a client sees behind sglang-router 0.3.2, which drops that option."""

    # ---- faults on demand (set per server, e.g. ``decode: [{…, sim: {fault: crash}}]``) -------
    fault: str = ""
    """One of: crash (the process dies, SIGKILL, when an affected request arrives), hang (accepts
    the request, never answers), error (answers HTTP ``fault_status``), drop (streams
    ``fault_drop_after_tokens`` tokens, then cuts the connection), malformed (sends a data line
    that is not JSON, then ends the stream), slow (every model time × ``fault_slowdown``),
    crash_at_start (exits with code 3 right after start-up), never_healthy (/health stays 503).
    Empty: no fault."""
    fault_after_requests: int = 0
    """Requests served normally before the fault starts."""
    fault_share: float = 1.0
    """Share of the requests after that which are affected (deterministic: evenly spread)."""
    fault_status: int = 500
    """HTTP status of ``fault: error``."""
    fault_drop_after_tokens: int = 8
    """Tokens streamed before ``fault: drop`` / ``malformed`` strikes."""
    fault_slowdown: float = 10.0
    """Factor on every model time under ``fault: slow``."""


FAULTS = ("", "crash", "hang", "error", "drop", "malformed", "slow", "crash_at_start", "never_healthy")


def fault_strikes(params: SimParams, index: int) -> bool:
    """Whether the request with this 0-based index (in arrival order) meets the fault."""
    if not params.fault or index < params.fault_after_requests:
        return False
    k = index - params.fault_after_requests
    share = min(max(params.fault_share, 0.0), 1.0)
    return int((k + 1) * share) > int(k * share)


def sim_param_fields() -> list[dataclasses.Field[Any]]:
    """The SimParams fields, in declaration order (the harness validates cluster files with it)."""
    return list(dataclasses.fields(SimParams))


def sim_flag(name: str) -> str:
    """Field name -> its command-line flag: ``speedup`` -> ``--sim-speedup``."""
    return "--sim-" + name.replace("_", "-")


def sim_cli_args(values: dict[str, Any]) -> list[str]:
    """Render a mapping of SimParams field -> value as command-line arguments of the simulator.

    Raises ValueError for an unknown field or a value of the wrong type (bools are rendered as
    ``true``/``false``; ints are accepted for float fields)."""
    types = {
        f.name: f.type if isinstance(f.type, str) else f.type.__name__ for f in dataclasses.fields(SimParams)
    }
    argv: list[str] = []
    for name, value in values.items():
        if name not in types:
            raise ValueError(f"unknown sim parameter {name!r}; known: {', '.join(types)}")
        want = types[name]
        ok = {
            "bool": isinstance(value, bool),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "float": isinstance(value, (int, float)) and not isinstance(value, bool),
            "str": isinstance(value, str),
        }[want]
        if not ok:
            raise ValueError(f"sim parameter {name!r} must be {want}, got {value!r}")
        if name == "fault" and value not in FAULTS:
            raise ValueError(f"unknown fault {value!r}; known: {', '.join(f for f in FAULTS if f)}")
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        argv += [sim_flag(name), text]
    return argv


@dataclass(frozen=True)
class ServerShape:
    """The launch flags of one server that the timing model depends on."""

    tp: int = 1
    pp: int = 1
    chunked_prefill_size: int = 8192
    prefill_pp: int = 1
    """Decode side: the PP size of the prefill servers it receives KV from."""
    max_running_requests: int | None = None


# ---------------------------------------------------------------------------------------------
# Elementary costs
# ---------------------------------------------------------------------------------------------


def tp_time_factor(params: SimParams, tp: int) -> float:
    """Multiplier of compute time on ``tp`` GPUs relative to ``reference_tp``."""
    return float((params.reference_tp / max(1, tp)) ** params.tp_scaling)


def prefill_compute_time(params: SimParams, tokens: int, context_before: int, tp: int) -> float:
    """Compute (all layers, no batch overhead) of a chunk of ``tokens`` new tokens whose request
    already has ``context_before`` tokens of KV; seconds on ``tp`` GPUs."""
    if tokens <= 0:
        return 0.0
    linear = tokens / params.prefill_tokens_per_s
    # each new token attends to the context before it plus, on average, half of the chunk
    attn = params.prefill_attn_s_per_token2 * tokens * (context_before + tokens / 2.0)
    return (linear + attn) * tp_time_factor(params, tp)


def prefill_stage_time(params: SimParams, pieces: Iterable[tuple[int, int]], tp: int, pp: int) -> float:
    """Time one pipeline stage holds a forward batch made of ``pieces`` = (tokens, context_before).

    With pp == 1 this is the whole batch time. With pp > 1 each stage does 1/pp of the layers plus
    an activation hand-off; a batch needs ``pp`` stage times to come out (pipeline fill) while the
    next batch may enter stage 0 after one stage time.
    """
    pp = max(1, pp)
    compute = sum(prefill_compute_time(params, n, c, tp) for n, c in pieces)
    overhead = params.prefill_batch_overhead_s * tp_time_factor(params, tp)
    stage = (compute + overhead) / pp
    if pp > 1:
        stage += params.pp_stage_overhead_s
    return stage


def prefill_chunk_time(
    params: SimParams, tokens: int, tp: int, pp: int = 1, context_before: int = 0
) -> float:
    """Latency of one chunk alone through the whole pipeline (pp stages), seconds."""
    return max(1, pp) * prefill_stage_time(params, [(tokens, context_before)], tp, pp)


def pipeline_bubble_time(params: SimParams, tokens: int, tp: int, pp: int) -> float:
    """Extra latency of a lone chunk due to pipeline fill, versus its throughput share."""
    return (max(1, pp) - 1) * prefill_stage_time(params, [(tokens, 0)], tp, pp)


def kv_transfer_time(params: SimParams, tokens: int, prefill_pp: int = 1) -> float:
    """Prefill -> decode KV transfer of a ``tokens``-long prompt: bootstrap per prefill PP rank
    (handshakes happen one after the other) plus bytes / bandwidth, seconds."""
    nbytes = max(0, tokens) * params.kv_bytes_per_token
    return params.kv_bootstrap_s * max(1, prefill_pp) + nbytes / (params.kv_bandwidth_gb_s * 1e9)


def experts_touched(params: SimParams, batch_size: int) -> float:
    """Expected share of a MoE layer's routed experts that ``batch_size`` tokens route to
    (uniform routing): ``1 - (1 - k/E)**B``; 1 for a dense model."""
    if params.weights_experts_gb <= 0 or params.experts_total <= 0:
        return 1.0
    k = min(params.experts_per_token, params.experts_total) / params.experts_total
    return float(1.0 - (1.0 - k) ** max(0, batch_size))


def decode_step_time(params: SimParams, batch_size: int, mean_context: float, tp: int) -> float:
    """One decode step emitting one token to each of ``batch_size`` running requests whose mean
    context (prompt + generated so far) is ``mean_context`` tokens, on ``tp`` GPUs; seconds.

    Two kinds of kernels, each bound by memory or by compute (roofline), one after the other, plus
    the fixed per-step cost: the matrix multiplies read, per GPU, ``1/tp`` of the weights the batch
    needs and compute ``batch_size`` tokens; attention reads the batch's KV cache (all of it per
    rank with ``kv_read_per_rank``, else ``1/tp``) and computes each token against its context."""
    if batch_size <= 0:
        return 0.0
    tp = max(1, tp)
    bandwidth = params.hbm_gb_s * 1e9 * params.decode_memory_efficiency  # bytes/s
    flops = params.gpu_tflops * 1e12 * params.decode_compute_efficiency  # FLOP/s
    weights = params.weights_dense_gb + params.weights_experts_gb * experts_touched(params, batch_size)
    matmul = max(
        weights * 1e9 / tp / bandwidth,
        batch_size * params.decode_gflop_per_token * 1e9 / tp / flops,
    )
    context = batch_size * max(0.0, mean_context)
    kv = context * params.kv_bytes_per_token / (1 if params.kv_read_per_rank else tp)
    attention = max(kv / bandwidth, context * params.decode_attn_mflop_per_context_token * 1e6 / tp / flops)
    return float(params.decode_step_base_s + matmul + attention)


def max_running(params: SimParams, shape: ServerShape) -> int:
    if shape.max_running_requests and shape.max_running_requests > 0:
        return shape.max_running_requests
    return params.default_max_running_requests


def kv_pool_tokens(params: SimParams, shape: ServerShape, context_length: int) -> int:
    """Tokens a simulated server's KV pool holds (what its prefix cache may keep): room for
    ``max_running`` requests of up to 8192 tokens of context each."""
    return max_running(params, shape) * min(context_length, 8192)


# ---------------------------------------------------------------------------------------------
# Chunked-prefill scheduler (shared by the server and the discrete-event simulation)
# ---------------------------------------------------------------------------------------------


@dataclass
class _Pending:
    key: Any
    total: int
    done: int = 0


@dataclass(frozen=True)
class PrefillBatch:
    """One forward batch: which requests it touches, when it leaves the pipeline."""

    start: float
    done_at: float
    pieces: tuple[tuple[Any, int, int], ...]
    """(key, tokens, context_before) per request in the batch."""
    finished: tuple[Any, ...]
    """Keys of requests whose prefill completes with this batch (at ``done_at``)."""


@dataclass
class PrefillScheduler:
    """FIFO chunked-prefill scheduler with a ``pp``-stage pipeline. Pure state machine.

    ``submit`` enqueues a request; ``next_batch(now)`` forms the next forward batch when stage 0 is
    free (call it again at ``stage0_free_at``) and returns when each of its requests finishes.
    """

    params: SimParams
    tp: int = 1
    pp: int = 1
    chunk_size: int = 8192
    queue: deque[_Pending] = field(default_factory=deque)
    stage_free: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pp = max(1, self.pp)
        self.chunk_size = max(1, self.chunk_size)
        if not self.stage_free:
            self.stage_free = [0.0] * self.pp

    def submit(self, key: Any, tokens: int, cached: int = 0) -> None:
        """Queue a prefill of ``tokens``, the first ``cached`` of them already in the KV cache
        (computed from there on, with them as context)."""
        total = max(1, tokens)
        self.queue.append(_Pending(key, total, min(max(0, cached), total - 1)))

    @property
    def stage0_free_at(self) -> float:
        return self.stage_free[0]

    def has_work(self) -> bool:
        return bool(self.queue)

    def cancel(self, key: Any) -> bool:
        for p in self.queue:
            if p.key == key and p.done == 0:
                self.queue.remove(p)
                return True
        return False

    def next_batch(self, now: float) -> PrefillBatch | None:
        """Form a batch at ``now`` if stage 0 is free and work is queued, else None."""
        if not self.queue or now < self.stage_free[0]:
            return None
        budget = self.chunk_size
        pieces: list[tuple[Any, int, int]] = []
        finished: list[Any] = []
        while self.queue and budget > 0:
            head = self.queue[0]
            n = min(budget, head.total - head.done)
            pieces.append((head.key, n, head.done))
            head.done += n
            budget -= n
            if head.done >= head.total:
                finished.append(head.key)
                self.queue.popleft()
        stage = prefill_stage_time(self.params, [(n, c) for _, n, c in pieces], self.tp, self.pp)
        t = now
        start = max(now, self.stage_free[0])
        for s in range(self.pp):
            t = max(t, self.stage_free[s]) + stage
            self.stage_free[s] = t
        return PrefillBatch(start, t, tuple(pieces), tuple(finished))
