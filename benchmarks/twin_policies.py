"""Does the model route as the real router does? Simulated workers with hidden timing parameters
behind the real router (sglang-router, or smg with ``--router smg``), one xPyD topology and one
``--policy`` at a time, measured; the model with the hidden parameters (no fit: the router's
model alone is under test) predicts each run — for a random policy as 32 draws of the router's
choices, their mean and 5th-95th percentile. Prints predicted against measured mean TTFT, TPOT
and output throughput, and for a random policy whether the measured value lies in the draws'
range.

    python benchmarks/twin_policies.py [--policies round_robin random power_of_two default]
                                       [--topologies 2p2d 3p1d 1p3d] [--router sglang-router]
                                       [--shared-prefix GROUPS TOKENS | --trace N] [--stats STAT ...]
                                       [--router-arg=ARG ...] [--runs N]
                                       [--model-as least_load]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import error_spread  # noqa: E402

from pytest_pd.measure import Measurer  # noqa: E402
from pytest_pd.sim.model import SimParams  # noqa: E402
from pytest_pd.sim.routing import POLICIES  # noqa: E402
from pytest_pd.twin.observed import NotModelled, observe, predict_spread  # noqa: E402
from pytest_pd.workload.spec import Workload  # noqa: E402
from tests.helpers.twin_truth import DOUBLE, HIDDEN, SEED, STATS, Predicted, write_cluster  # noqa: E402

PRE = {"tp": 4, "chunked_prefill_size": 16384}
DEC = {"tp": 4}
TRACE = Path(__file__).resolve().parents[1] / "suites" / "traces" / "synthetic-1000.jsonl"
TOPOLOGIES = {  # name: (prefill servers, decode servers, workload)
    "2p2d": ([PRE] * 2, [DEC] * 2, DOUBLE),
    "3p1d": ([PRE] * 3, [DEC], SEED),
    "1p3d": ([PRE], [DEC] * 3, DOUBLE),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--policies", nargs="+", default=["round_robin", "random", "power_of_two", "default"])
    ap.add_argument("--topologies", nargs="+", default=list(TOPOLOGIES), choices=list(TOPOLOGIES))
    ap.add_argument("--router", default="sglang-router", choices=["sglang-router", "smg"])
    ap.add_argument("--speedup", type=float, default=10.0)
    prompts = ap.add_mutually_exclusive_group()
    prompts.add_argument(
        "--shared-prefix",
        type=int,
        nargs=2,
        metavar=("GROUPS", "TOKENS"),
        help="prompts in GROUPS groups sharing their first TOKENS tokens",
    )
    prompts.add_argument(
        "--trace",
        type=int,
        metavar="N",
        help="replay the shipped synthetic trace's first N rows instead (prompts sharing prefixes)",
    )
    ap.add_argument(
        "--stats", nargs="+", default=list(STATS), help=f"what to compare (default: {' '.join(STATS)})"
    )
    ap.add_argument(
        "--router-arg", action="append", default=[], help="one more argument for the router (repeatable)"
    )
    ap.add_argument("--runs", type=int, default=1, help="measure each run N times; then a summary")
    ap.add_argument(
        "--model-as",
        choices=POLICIES,
        help="predict as if the router ran this model policy (for a router policy not modelled)",
    )
    args = ap.parse_args()
    params = dataclasses.replace(SimParams(), **HIDDEN)
    print(f"router {args.router}, hidden parameters {HIDDEN}, speedup {args.speedup:g}")
    print(f"{'run':<28}" + "".join(f"{s:>44}" for s in args.stats))
    worst = 0.0
    seen: dict[str, list[Predicted]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for topo in args.topologies:
            prefill, decode, workload = TOPOLOGIES[topo]
            if args.shared_prefix:
                groups, tokens = args.shared_prefix
                workload = dataclasses.replace(workload, prefix_groups=groups, prefix_len=tokens)
            if args.trace:
                workload = Workload(trace_path=str(TRACE), num_requests=args.trace, concurrency=512)
            for policy in args.policies:
                name = f"{topo}-{policy}".replace("_", "-")
                for _ in range(args.runs):
                    got = _measure(folder, name, prefill, decode, workload, policy, args, params)
                    if got is None:
                        break
                    seen.setdefault(name, []).append(got)
                    worst = max(worst, *(abs(got.error(s)) for s in args.stats))
                    print(f"{name:<28}" + "".join(f"{_cell(got, s):>44}" for s in args.stats), flush=True)
    if args.runs > 1:
        print("\nper run, measured against the model's mean (and beyond the draws' range):")
        for name, runs in seen.items():
            for s in args.stats:
                beyond = max(abs(100 * g.outside(s)) for g in runs)
                spread = error_spread([g.error(s) for g in runs])
                print(f"{name:<20}{s:<20}{spread}  beyond the range at most {beyond:.1f} %")
    print(f"largest error against the model's (mean) prediction: {100 * worst:.1f} %")
    return 0


def _measure(folder, name, prefill, decode, workload, policy, args, params) -> Predicted | None:
    named = None if policy == "default" else policy
    write_cluster(folder, name, prefill, decode, 1, args.speedup, named, args.router, args.router_arg)
    measurer = Measurer(folder, folder / "runs", None, say=lambda _: None)
    try:
        record = measurer.measure(measurer.spec(name), workload)
    finally:
        measurer.close()
    if args.model_as:  # the run read with a modelled router, then given the policy asked for
        spec = {**record.cluster.spec, "router": {"policy": "round_robin"}}
        record = record.model_copy(update={"cluster": record.cluster.model_copy(update={"spec": spec})})
    try:
        run = observe(record)
    except NotModelled as exc:
        print(f"{name:<28}not modelled: {exc}")
        return None
    if args.model_as:
        model = args.model_as  # both sides (observe names each side's policy)
        topology = dataclasses.replace(run.topology, policy=model, prefill_policy=model, decode_policy=model)
        run = dataclasses.replace(run, topology=topology)
    return Predicted(run, *predict_spread(params, run))


def _cell(got: Predicted, stat: str) -> str:
    m, p = got.run.measured[stat], got.mean[stat]
    cell = f"{p:.4g} vs {m:.4g} {100 * (p / m - 1):+5.1f}%"
    if got.run.topology.random:
        lo, hi = got.spread[stat]
        cell += f" [{lo:.4g}–{hi:.4g} {'in' if lo <= m <= hi else 'OUT'}]"
    return cell


if __name__ == "__main__":
    raise SystemExit(main())
