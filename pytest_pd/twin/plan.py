"""Planning topologies on the timing model: which candidates fit in memory, what each would
measure on a workload, which meet the SLOs, and which are on the Pareto front of output
throughput per GPU against mean TTFT and mean TPOT. Pure but for the CPU time of the simulations.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pytest_pd.judge.slo import slo_misses
from pytest_pd.sim.candidates import gpu_count
from pytest_pd.sim.model import ServerShape, SimParams, max_running
from pytest_pd.sim.routing import Topology
from pytest_pd.workload.spec import Workload

from .observed import STATS, expected_stats
from .requests import workload_requests

PER_GPU = "output_throughput_per_gpu"
SLO_STATS = (*STATS, PER_GPU)
"""What an SLO may bound: latencies from above, throughputs from below."""
OBJECTIVES = ((PER_GPU, 1), ("mean_ttft_ms", -1), ("mean_tpot_ms", -1))
"""The Pareto front's axes: (statistic, +1 higher is better / -1 lower is better)."""
DEFAULT_MEM_FRACTION = 0.9
"""SGLang's --mem-fraction-static when neither the template nor the user gives one."""


class PlanError(ValueError):
    """A plan that cannot be made as asked; the message says what to change."""


@dataclass(frozen=True)
class Candidate:
    topology: Topology
    """As evaluated: a decode server's ``max_running_requests`` capped to what its KV cache holds."""
    stats: Mapping[str, float]
    """Model-time statistics (:data:`SLO_STATS`); empty when the candidate does not fit."""
    problem: str = ""
    """Why it is out: does not fit in memory, or misses an SLO; empty when it is in."""
    pareto: bool = False

    @property
    def gpus(self) -> int:
        return gpu_count(self.topology)

    @property
    def feasible(self) -> bool:
        return not self.problem


# ---------------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------------


def weights_per_gpu_gb(params: SimParams, shape: ServerShape) -> float:
    return (params.weights_dense_gb + params.weights_experts_gb) / (shape.tp * shape.pp)


def kv_capacity_tokens(params: SimParams, shape: ServerShape, mem_fraction: float) -> float:
    """Tokens of KV cache one server holds beside its weights (<= 0: the weights do not fit).
    Each GPU holds its PP stage's layers; with MLA (``kv_read_per_rank``) every TP rank keeps the
    whole latent cache, otherwise the TP ranks split it."""
    room_gb = params.gpu_memory_gb * mem_fraction - weights_per_gpu_gb(params, shape)
    sharing = 1 if params.kv_read_per_rank else shape.tp
    return room_gb * 1e9 * sharing * shape.pp / max(params.kv_bytes_per_token, 1e-9)


def fit_memory(
    params: SimParams,
    topology: Topology,
    workload: tuple[int, int, int],
    mem_fraction: float,
) -> tuple[Topology, str]:
    """The topology with a decode server's batch capped to the requests its KV cache holds when
    that is fewer than the workload's concurrency (as SGLang sizes its pool), and why it cannot
    run at all ("" when it can). ``workload``: (longest prompt, longest output, concurrency)."""
    max_input, max_output, concurrency = workload
    need = f"{mem_fraction:g} x {params.gpu_memory_gb:g} GB per GPU"
    for role, shapes, tokens in (("prefill", topology.prefill, max_input), ("decode", topology.decode, 0)):
        for s in shapes:
            weights = weights_per_gpu_gb(params, s)
            if weights >= params.gpu_memory_gb * mem_fraction:
                return (
                    topology,
                    f"{role} TP{s.tp}xPP{s.pp}: weights need {weights:.0f} GB per GPU, over {need}",
                )
            if role == "prefill" and kv_capacity_tokens(params, s, mem_fraction) < tokens:
                return topology, f"prefill TP{s.tp}xPP{s.pp}: no room for one {tokens}-token prompt's KV"
    decode = []
    for s in topology.decode:
        fits = int(kv_capacity_tokens(params, s, mem_fraction) // (max_input + max_output))
        if fits < 1:
            return (
                topology,
                f"decode TP{s.tp}: no room for one request's KV ({max_input + max_output} tokens)",
            )
        if fits < min(concurrency, max_running(params, s)):
            s = dataclasses.replace(s, max_running_requests=fits)
        decode.append(s)
    return dataclasses.replace(topology, decode=tuple(decode)), ""


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


def evaluate(
    params: SimParams,
    topologies: Iterable[Topology],
    workload: Workload,
    slos: Mapping[str, float] | None = None,
    mem_fraction: float = DEFAULT_MEM_FRACTION,
) -> list[Candidate]:
    """Every topology checked for memory, simulated on the workload, judged by the SLOs, and the
    feasible ones marked when on the Pareto front (:data:`OBJECTIVES`). Order is kept."""
    requests = workload_requests(workload)
    longest = (max(requests.input_lens), max(requests.output_lens), workload.concurrency)
    out = []
    for topology in topologies:
        fitted, problem = fit_memory(params, topology, longest, mem_fraction)
        if problem:
            out.append(Candidate(topology, {}, "memory: " + problem))
            continue
        stats, _ = expected_stats(params, fitted, requests)
        stats[PER_GPU] = stats["output_throughput"] / gpu_count(fitted)
        misses = slo_misses(stats, slos or {})
        out.append(Candidate(fitted, stats, "SLO: " + "; ".join(misses) if misses else ""))
    front = pareto_front([c.stats for c in out if c.feasible])
    it = iter(front)
    return [dataclasses.replace(c, pareto=next(it)) if c.feasible else c for c in out]


def pareto_front(points: Sequence[Mapping[str, float]]) -> list[bool]:
    """Which points no other point dominates (at least as good on every objective, better on one)."""
    if not points:
        return []
    m = np.array([[sign * p[name] for name, sign in OBJECTIVES] for p in points])  # higher is better
    geq = (m[:, None, :] >= m[None, :, :]).all(axis=2)  # geq[i, j]: i at least as good as j
    gt = (m[:, None, :] > m[None, :, :]).any(axis=2)
    dominated = np.asarray((geq & gt).any(axis=0))
    return [not bool(d) for d in dominated]


def ranked(candidates: Sequence[Candidate]) -> list[Candidate]:
    """The Pareto front, best output throughput per GPU first (ties: lower mean TTFT)."""
    front = [c for c in candidates if c.pareto]
    return sorted(front, key=lambda c: (-c.stats[PER_GPU], c.stats["mean_ttft_ms"]))


def same_servers(a: Topology, b: Topology) -> bool:
    """Whether two topologies have the same servers (router policy and batch caps aside)."""

    def key(t: Topology) -> tuple[list[tuple[int, int, int]], list[tuple[int, int]]]:
        pre = sorted((s.tp, s.pp, s.chunked_prefill_size) for s in t.prefill)
        dec = sorted((s.tp, s.pp) for s in t.decode)
        return pre, dec

    return key(a) == key(b)
