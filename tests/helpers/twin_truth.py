"""The hidden-truth experiment of the digital twin: simulated clusters run with timing parameters
the fit is never told; ``pytest-pd calibrate``'s fit sees the stored records of two topologies
(the seed's PP2 and TP8 on the seed workload) and predicts three it never saw — 2P1D, TP4 prefill
+ TP4 decode, and 2P2D at twice the load — which are measured too. Shared by the e2e test that
holds it to 5 % and ``benchmarks/twin_identifiability.py`` that prints it."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pytest_pd.measure import Measurer
from pytest_pd.sim.model import SimParams
from pytest_pd.twin.calibrate import Calibration, calibrate, relative_errors
from pytest_pd.twin.capacity import model_of
from pytest_pd.twin.observed import Observed, observe, predict_spread
from pytest_pd.workload.spec import Workload

from . import REPO, free_ports, sim_cluster_copy

HIDDEN = {
    "prefill_tokens_per_s": 12000.0,
    "prefill_batch_overhead_s": 0.1,
    "kv_bootstrap_s": 0.4,
    "tp_scaling": 0.85,
    "decode_step_base_s": 0.004,
    "decode_memory_efficiency": 0.35,
}
SEED = Workload(input_len=6000, output_len=1000, concurrency=16, num_requests=32)
DOUBLE = Workload(input_len=6000, output_len=1000, concurrency=32, num_requests=64)
PRE_PP2 = {"tp": 4, "pp": 2, "chunked_prefill_size": 16384}
# name: (prefill servers, decode servers, decode prefill_pp, workload, seen by the fit)
TOPOLOGIES = {
    "twin-pp2": ([PRE_PP2], [{"tp": 8}], 2, SEED, True),
    "twin-tp8": ([{"tp": 8, "chunked_prefill_size": 16384}], [{"tp": 8}], 1, SEED, True),
    "twin-2p1d": ([PRE_PP2, PRE_PP2], [{"tp": 8}], 2, SEED, False),
    "twin-tp4": ([{"tp": 4, "chunked_prefill_size": 16384}], [{"tp": 4}], 1, SEED, False),
    "twin-2p2d": ([{"tp": 4, "chunked_prefill_size": 16384}] * 2, [{"tp": 4}] * 2, 1, DOUBLE, False),
}
STATS = ("mean_ttft_ms", "mean_tpot_ms", "output_throughput")


def write_cluster(
    folder: Path,
    name: str,
    prefill: list[dict],
    decode: list[dict],
    prefill_pp: int,
    speedup: float,
    policy: str | None,
    router: str = "sglang-router",
    router_args: Sequence[str] = (),
) -> None:
    """A simulated cluster file with the hidden parameters; ``policy`` None runs the router's
    default, ``router`` is its kind, ``router_args`` more of its flags."""
    data: dict[str, Any] = yaml.safe_load((REPO / "clusters" / "sim-pp2.yaml").read_text())
    data.pop("baseline", None)
    data["name"] = name
    data["model"]["path"] = str(REPO / "clusters" / "models" / "sim-tiny")
    data["sim"] = {**HIDDEN, "speedup": speedup}
    data["hosts"] = {"node": {"address": "127.0.0.1"}}
    # all at once: ports asked for one by one can come back equal once each socket is closed
    ports = iter(free_ports(2 * len(prefill) + len(decode) + 2))
    data["prefill"] = [
        {
            **copy.deepcopy(p),
            "host": "node",
            "port": next(ports),
            "bootstrap_port": next(ports),
            "disable_overlap_schedule": True,
        }
        for p in prefill
    ]
    data["decode"] = [{**d, "host": "node", "port": next(ports), "prefill_pp": prefill_pp} for d in decode]
    data["router"].update(host="node", port=next(ports), prometheus_port=next(ports))
    if policy is not None:  # else the router's default (cache_aware)
        data["router"]["extra_args"] = [*data["router"].get("extra_args", []), "--policy", policy]
    data["router"]["kind"] = router
    data["router"]["extra_args"] = [*data["router"].get("extra_args", []), *router_args]
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


@dataclass(frozen=True)
class Outcome:
    calibration: Calibration
    held_out: list[Observed]
    errors: dict[str, dict[str, float]]
    """Per held-out run label, per statistic: (predicted - measured) / measured."""

    @property
    def worst(self) -> float:
        return max(abs(per[s]) for per in self.errors.values() for s in STATS)


def run_experiment(folder: Path, speedup: float, policy: str | None, say: Callable[[str], None]) -> Outcome:
    """Measure every topology (one at a time), fit on the seen ones, predict the others."""
    for name, (pre, dec, pp, _, _) in TOPOLOGIES.items():
        write_cluster(folder, name, pre, dec, pp, speedup, policy)
    measurer = Measurer(folder, folder / "runs", None, say=say)
    records = {}
    try:
        for name, (_, _, _, workload, _) in TOPOLOGIES.items():
            records[name] = measurer.measure(measurer.spec(name), workload)
    finally:
        measurer.close()
    seen = [observe(records[n]) for n, t in TOPOLOGIES.items() if t[4]]
    unseen = [observe(records[n]) for n, t in TOPOLOGIES.items() if not t[4]]
    cal = calibrate(seen)
    return Outcome(cal, unseen, relative_errors(cal.params, unseen))


CONVERSATIONS = Workload(
    input_len=3000,
    output_len=200,
    num_requests=32,
    concurrency=4,
    turns=4,
    turn_input_len=500,
    think_time_s=2.0,
)
"""Eight four-turn conversations, four at a time, two seconds of thought between turns: each
later turn resends the conversation so far, which the prefill that served the previous turn
holds in its prefix cache."""
JUDGED = (*STATS, "prefix_cache_hit_rate")


def conversation_run(folder: Path, speedup: float, say: Callable[[str], None]) -> Predicted:
    """:data:`CONVERSATIONS` on the 2P1D topology behind the router's default policy (random
    prefill choice while the loads are balanced, so a turn finds the previous one cached about
    half the time), measured, and predicted by the model with the hidden parameters (no fit)."""
    prefill, decode, prefill_pp, _, _ = TOPOLOGIES["twin-2p1d"]
    write_cluster(folder, "twin-2p1d", prefill, decode, prefill_pp, speedup, policy=None)
    measurer = Measurer(folder, folder / "runs", None, say=say)
    try:
        run = observe(measurer.measure(measurer.spec("twin-2p1d"), CONVERSATIONS))
    finally:
        measurer.close()
    mean, spread = predict_spread(dataclasses.replace(SimParams(), **HIDDEN), run)
    return Predicted(run, mean, spread)


EVICTING = Workload(
    input_len=3000,
    output_len=200,
    num_requests=32,
    concurrency=8,
    turns=4,
    turn_input_len=500,
    think_time_s=1.0,
)
"""Eight conversations at once whose prompts grow to 5100 tokens: about 40 000 tokens to keep."""
EVICTING_MAX_RUNNING = 3


def evicting_run(
    folder: Path, say: Callable[[str], None], max_running: int = EVICTING_MAX_RUNNING
) -> tuple[Observed, SimParams]:
    """:data:`EVICTING` on sim-pp2 with its prefill's KV pool cut to ``max_running`` x 8192
    tokens (``max_running_requests``), measured, and sim-pp2's own model."""
    path = sim_cluster_copy("sim-pp2", folder, baseline=None)
    data = yaml.safe_load(path.read_text())
    data["prefill"][0]["max_running_requests"] = max_running
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    measurer = Measurer(folder, folder / "runs", None, say=say)
    try:
        spec = measurer.spec("sim-pp2")
        run = observe(measurer.measure(spec, EVICTING))
    finally:
        measurer.close()
    params = model_of(spec)
    assert params is not None
    return run, params


@dataclass(frozen=True)
class Predicted:
    run: Observed
    mean: dict[str, float]
    spread: dict[str, tuple[float, float]]

    def error(self, stat: str) -> float:
        """(measured - the draws' mean) / the draws' mean."""
        return self.run.measured[stat] / self.mean[stat] - 1

    def outside(self, stat: str) -> float:
        """How far the measured value lies outside the draws' range, relative to its edge (0
        inside)."""
        lo, hi = self.spread[stat]
        value = self.run.measured[stat]
        return value / hi - 1 if value > hi else value / lo - 1 if value < lo else 0.0
