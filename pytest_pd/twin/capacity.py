"""The timing model's answer to a capacity search: the same search (judge/capacity.py) with each
load simulated instead of measured, so that a measured capacity can be checked against the
model's. Pure but for CPU time."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pytest_pd.judge.capacity import Capacity, search
from pytest_pd.sim.closed_loop import Topology, simulate
from pytest_pd.sim.model import SimParams
from pytest_pd.workload.spec import Workload
from pytest_pd.workload.sweep import at_load

from .observed import stats_of
from .plan import workload_requests


def model_stats(params: SimParams, topology: Topology, workload: Workload) -> dict[str, float]:
    """The workload's TTFT/TPOT statistics and throughput on the model (model time)."""
    ins, outs, arrivals = workload_requests(workload)
    run = simulate(params, topology, ins, outs, concurrency=workload.concurrency, arrivals=arrivals)
    return stats_of(run["requests"], run["duration_s"])


def model_capacity(
    params: SimParams,
    topology: Topology,
    base: Workload,
    slo: Mapping[str, float],
    over: str = "concurrency",
    **search_args: Any,
) -> Capacity:
    """:func:`judge.capacity.search` over ``over`` with every load simulated (no request fails)."""

    def evaluate(load: float) -> tuple[dict[str, float], int]:
        return model_stats(params, topology, at_load(base, over, load)), 0

    return search(evaluate, slo, over=over, **search_args)
