"""A stored run as the timing model sees it: the topology it ran on (from the cluster file the
record keeps), its requests' lengths and arrival times, its concurrency cap, and the statistics
it measured (model time) that a profile is fitted to and judged by."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pytest_pd.record import RunRecord
from pytest_pd.sim.closed_loop import Topology, simulate
from pytest_pd.sim.model import ServerShape, SimParams
from pytest_pd.workload.runner import arrival_offsets

STATS = (
    "mean_ttft_ms",
    "median_ttft_ms",
    "p90_ttft_ms",
    "mean_tpot_ms",
    "median_tpot_ms",
    "p90_tpot_ms",
    "output_throughput",
)
"""What a run is fitted on: TTFT and TPOT distributions (their spread carries the queueing and
batch effects a mean hides) and the throughput."""

ROUTER_POLICY = {"round_robin": "round_robin"}
"""sglang-router / smg ``--policy`` values modelled as themselves; every other policy
(cache_aware, the default, power_of_two, random) as least_load."""


class NotModelled(ValueError):
    """A run the timing model cannot stand for; the message says why."""


@dataclass(frozen=True)
class Observed:
    label: str
    topology: Topology
    input_lens: tuple[int, ...]
    output_lens: tuple[int, ...]
    arrivals: tuple[float, ...] | None
    concurrency: int
    measured: Mapping[str, float]


def _shape(server: Mapping[str, Any], defaults: Mapping[str, Any]) -> ServerShape:
    def get(key: str, fallback: Any) -> Any:
        value = server.get(key)
        if value is None:
            value = defaults.get(key)
        return fallback if value is None else value

    return ServerShape(
        tp=int(get("tp", 1)),
        pp=int(get("pp", 1)),
        chunked_prefill_size=int(get("chunked_prefill_size", 8192)),
        prefill_pp=int(get("prefill_pp", 1)),
        max_running_requests=get("max_running_requests", None),
    )


def topology_of(spec: Mapping[str, Any]) -> Topology:
    """The servers of a cluster file (as a record keeps it) and its router's policy."""
    defaults = spec.get("server_defaults") or {}
    router = spec.get("router") or {}
    args = list(router.get("extra_args") or [])
    named = router.get("policy")
    if named is None and "--policy" in args and args.index("--policy") + 1 < len(args):
        named = args[args.index("--policy") + 1]
    policy = ROUTER_POLICY.get(str(named), "least_load")
    prefill = tuple(_shape(s, defaults) for s in spec.get("prefill") or [])
    decode = tuple(_shape(s, defaults) for s in spec.get("decode") or [])
    return Topology(prefill, decode, policy)


def observe(record: RunRecord) -> Observed:
    """The run as the model sees it; raises :class:`NotModelled` when it cannot be."""
    label = f"{record.cluster.name}/{record.workload.id}"
    if record.failure is not None or not record.metrics.get("completed"):
        raise NotModelled(f"{label}: the run did not complete")
    if not record.cluster.spec:
        raise NotModelled(f"{label}: the record keeps no cluster file (written by an older version?)")
    try:
        topology = topology_of(record.cluster.spec)
    except (TypeError, ValueError) as exc:
        raise NotModelled(
            f"{label}: its cluster file has no prefill/decode servers to model ({exc})"
        ) from exc
    w = record.workload
    if w.trace_path:
        raise NotModelled(f"{label}: a trace replay's shared prefixes (prefix caching) are not modelled")
    lens = _request_lengths(record)
    if lens is None:
        lens = ((w.input_len,) * w.num_requests, (w.output_len,) * w.num_requests)
    n = len(lens[0])
    # the client's schedule ran in wall time; a simulated cluster's model time is speedup x that
    arrivals = None
    if not math.isinf(w.request_rate):
        arrivals = tuple(float(t) * record.speedup for t in arrival_offsets(w, n))
    measured = {k: float(record.metrics[k]) for k in STATS if _finite(record.metrics.get(k))}
    return Observed(label, topology, lens[0], lens[1], arrivals, int(w.concurrency), measured)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _request_lengths(record: RunRecord) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """Per-request (prompt, output) lengths of the stored run's first repeat, in send order."""
    runs = record.runs()
    if not runs:
        return None
    reqs = sorted(runs[0].get("records") or [], key=lambda r: r.get("index", 0))
    reqs = [r for r in reqs if r.get("index", 0) >= 0]
    if not reqs:
        return None
    return (
        tuple(int(r.get("prompt_tokens") or r["prompt_len"]) for r in reqs),
        tuple(int(r.get("completion_tokens") or r["expected_output_len"]) for r in reqs),
    )


def predict(params: SimParams, run: Observed) -> dict[str, float]:
    """The run's :data:`STATS` on the timing model with ``params`` (model time)."""
    out = simulate(
        params,
        run.topology,
        run.input_lens,
        run.output_lens,
        concurrency=run.concurrency,
        arrivals=run.arrivals,
    )
    return stats_of(out["requests"], out["duration_s"])


def stats_of(requests: Sequence[Mapping[str, float]], duration_s: float) -> dict[str, float]:
    ttft = np.array([1000 * q["ttft"] for q in requests])
    tpot = np.array(
        [1000 * (q["latency"] - q["ttft"]) / (q["output_len"] - 1) for q in requests if q["output_len"] > 1]
    )
    out_tokens = sum(q["output_len"] for q in requests)
    stats = {"output_throughput": out_tokens / duration_s if duration_s > 0 else math.nan}
    for name, values in (("ttft", ttft), ("tpot", tpot)):
        if values.size:
            stats[f"mean_{name}_ms"] = float(values.mean())
            stats[f"median_{name}_ms"] = float(np.median(values))
            stats[f"p90_{name}_ms"] = float(np.percentile(values, 90))
    return stats
