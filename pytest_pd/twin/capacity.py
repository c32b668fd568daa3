"""The timing model's answer to a capacity search: the same search (judge/capacity.py) with each
load simulated instead of measured, so that a measured capacity can be checked against the
model's. Pure but for CPU time."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from pytest_pd.cluster.engines.sim.profile import TIMING_PARAMS, load_profile
from pytest_pd.cluster.spec import ClusterSpec
from pytest_pd.judge.capacity import Capacity, CapacitySpec
from pytest_pd.sim.model import SimParams
from pytest_pd.sim.routing import Topology
from pytest_pd.workload.spec import Workload
from pytest_pd.workload.sweep import at_load

from .observed import NotModelled, expected_stats, topology_of
from .requests import workload_requests


def model_stats(params: SimParams, topology: Topology, workload: Workload) -> dict[str, float]:
    """The workload's TTFT/TPOT statistics and throughput on the model (model time)."""
    return expected_stats(params, topology, workload_requests(workload))[0]


def model_capacity(params: SimParams, topology: Topology, base: Workload, wanted: CapacitySpec) -> Capacity:
    """The search (or sweep) ``wanted`` with every load simulated (no request fails)."""

    def evaluate(load: float) -> tuple[dict[str, float], int]:
        return model_stats(params, topology, at_load(base, wanted.over, load)), 0

    return wanted.run(evaluate)


def model_of(spec: ClusterSpec) -> SimParams | None:
    """The timing model that stands for a cluster: its twin profile's (``twin: {profile: …}``),
    else a simulated cluster's own parameters (its ``sim:`` block), else None."""
    if spec.twin is not None:
        return load_profile(Path(spec.resolve_path(spec.twin.profile))).sim_params()
    if spec.engine == "sim":
        values: dict[str, Any] = {
            k: v for k, v in spec.engine_options.get("sim", {}).items() if k in TIMING_PARAMS
        }
        return dataclasses.replace(SimParams(), **values)
    return None


def predicted_capacity(spec: ClusterSpec, base: Workload, wanted: CapacitySpec) -> float | None:
    """The model's answer to the capacity search ``wanted`` on this cluster, or None when no
    model stands for it (or the search finds no load within the SLOs)."""
    params = model_of(spec)
    if params is None:
        return None
    try:
        topology = topology_of(spec.model_dump(mode="json"))
    except NotModelled:  # its router's policy
        return None
    return model_capacity(params, topology, base, wanted).capacity
