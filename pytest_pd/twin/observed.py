"""A stored run as the timing model sees it: the topology it ran on (from the cluster file the
record keeps), its requests' lengths and arrival times, its concurrency cap, and the statistics
it measured (model time) that a profile is fitted to and judged by."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pytest_pd.cluster import routers
from pytest_pd.cluster.flags import read_flags
from pytest_pd.record import RunRecord
from pytest_pd.sim.metrics import GEN_THROUGHPUT_WINDOW_S
from pytest_pd.sim.model import ServerShape, SimParams
from pytest_pd.sim.routing import Thresholds, Topology
from pytest_pd.workload.spec import WorkloadError

from .contention import shared_cores
from .requests import Requests, workload_requests

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


HIT_RATE = "prefix_cache_hit_rate"
"""Predicted and judged where the prompts share prefixes (a trace replay, prefix groups,
conversations), besides :data:`STATS`."""


class NotModelled(ValueError):
    """A run the timing model cannot stand for; the message says why."""


@dataclass(frozen=True)
class Observed:
    label: str
    topology: Topology
    requests: Requests
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
    """The servers of a cluster file (as a record keeps it) and what its router's policies do;
    raises :class:`NotModelled` for a policy the model does not know for that router kind, and
    for servers sharing CPU cores (:mod:`.contention`)."""
    defaults = spec.get("server_defaults") or {}
    router = spec.get("router") or {}
    kind = routers.KINDS.get(str(router.get("kind") or "sglang-router"))
    if kind is None:
        raise NotModelled(f"router kind {router.get('kind')!r} is not modelled")
    named = {key: router.get(key) for key in ("policy", "prefill_policy", "decode_policy")}
    flags = read_flags(router.get("extra_args") or [], {"--policy", "--prefill-policy", "--decode-policy"})
    for flag, value in flags:  # a setting given as an extra argument
        key = (flag or "").lstrip("-").replace("-", "_")
        if key in named and named[key] is None:
            named[key] = str(value)
    policy = named["policy"] or kind.default_policy
    extra = router.get("extra_args") or []
    modelled = []
    for name in (policy, named["prefill_policy"] or policy, named["decode_policy"] or policy):
        model = kind.policy_model(name, extra)
        if model is None:
            raise NotModelled(
                f"{kind.name}'s --policy {name} is not modelled (modelled: {'; '.join(kind.modelled())})"
            )
        modelled.append(model)
    contention = shared_cores(spec)
    if contention is not None:
        raise NotModelled(contention)
    prefill = tuple(_shape(s, defaults) for s in spec.get("prefill") or [])
    decode = tuple(_shape(s, defaults) for s in spec.get("decode") or [])
    # a simulated cluster's model runs `speedup` times faster than the router's wall clock
    scale = float((spec.get("sim") or {}).get("speedup") or 1.0)
    return Topology(
        prefill,
        decode,
        modelled[0],
        modelled[1],
        modelled[2],
        poll_interval_s=kind.poll_interval_s(extra) * scale,
        gen_window_s=GEN_THROUGHPUT_WINDOW_S * scale,
        thresholds=_thresholds(extra),
    )


THRESHOLD_FLAGS = {
    "--cache-threshold": "cache",
    "--cache-match-threshold": "cache",
    "--balance-abs-threshold": "balance_abs",
    "--spill-abs-threshold": "balance_abs",
    "--balance-rel-threshold": "balance_rel",
    "--spill-rel-threshold": "balance_rel",
}
"""The routers' flags (and smg's aliases) for what :class:`Thresholds` holds."""


def _thresholds(extra_args: Sequence[str]) -> Thresholds:
    """The thresholds ``extra_args`` set (the last of each; the routers' defaults otherwise)."""
    given: dict[str, Any] = {}
    try:
        flags = read_flags(extra_args, set(THRESHOLD_FLAGS))
    except ValueError:  # a flag without its value: the router refuses it at launch
        flags = []
    for flag, value in flags:
        field = THRESHOLD_FLAGS.get(flag or "")
        try:
            if field is not None and value is not None:
                given[field] = int(value) if field == "balance_abs" else float(value)
        except ValueError:
            continue  # the router refuses it at launch
    return Thresholds(**given)


def observe(record: RunRecord) -> Observed:
    """The run as the model sees it; raises :class:`NotModelled` when it cannot be."""
    label = f"{record.cluster.name}/{record.workload.id}"
    if record.failure is not None or not record.metrics.get("completed"):
        raise NotModelled(f"{label}: the run did not complete")
    if not record.cluster.spec:
        raise NotModelled(f"{label}: the record keeps no cluster file (written by an older version?)")
    w = record.workload
    lens = _request_lengths(record)
    if w.turns > 1 and lens is not None and len(lens[0]) != w.num_requests:
        sent = f"{len(lens[0])} of {w.num_requests} requests sent"
        raise NotModelled(f"{label}: a conversation ended early ({sent})")
    try:
        # the record keeps the workload as asked, in the cluster's own time: a simulated
        # cluster's client ran its schedule `speedup` times faster, but these are model time
        requests = workload_requests(w, lens)
    except WorkloadError as exc:
        raise NotModelled(f"{label}: its requests cannot be rebuilt: {exc}") from None
    try:
        topology = topology_of(record.cluster.spec)
    except NotModelled as exc:
        raise NotModelled(f"{label}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise NotModelled(
            f"{label}: its cluster file has no prefill/decode servers to model ({exc})"
        ) from exc
    measured = {k: float(record.metrics[k]) for k in STATS if _finite(record.metrics.get(k))}
    if requests.prefix_keys is not None and _finite(record.metrics.get(HIT_RATE)):
        measured[HIT_RATE] = float(record.metrics[HIT_RATE])
    return Observed(label, topology, requests, measured)


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


DRAWS = 32
"""Runs of the model per prediction when the router routes at random: one measured run is one draw
of the router's choices, so the model predicts their spread (and its mean)."""


def expected_stats(
    params: SimParams, topology: Topology, requests: Requests
) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """:data:`STATS` of a run on the timing model (model time), and each one's range (5th to
    95th percentile) over :data:`DRAWS` draws of a random router's choices (a point otherwise)."""
    draws = []
    for seed in range(DRAWS if topology.random else 1):
        out = requests.simulate(params, topology, seed)
        stats = stats_of(out["requests"], out["duration_s"])
        if "cache_hit_rate" in out:
            stats[HIT_RATE] = out["cache_hit_rate"]
        draws.append(stats)
    mean = {k: float(np.mean([d[k] for d in draws])) for k in draws[0]}
    spread = {
        k: (float(np.percentile([d[k] for d in draws], 5)), float(np.percentile([d[k] for d in draws], 95)))
        for k in draws[0]
    }
    return mean, spread


def predict(params: SimParams, run: Observed) -> dict[str, float]:
    """The run's :data:`STATS` on the timing model with ``params`` (model time; the mean over a
    random router's draws)."""
    return predict_spread(params, run)[0]


def predict_spread(
    params: SimParams, run: Observed
) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """:func:`expected_stats` of the run."""
    return expected_stats(params, run.topology, run.requests)


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
