"""Does the model route as the real router does? Simulated workers with hidden timing parameters
behind the real router (sglang-router, or smg with ``--router smg``), one xPyD topology and one
``--policy`` at a time, measured; the model with the hidden parameters (no fit: the router's
model alone is under test) predicts each run — for a random policy as 32 draws of the router's
choices, their mean and 5th-95th percentile. Prints predicted against measured mean TTFT, TPOT
and output throughput, and for a random policy whether the measured value lies in the draws'
range.

    python benchmarks/twin_policies.py [--policies round_robin random power_of_two default]
                                       [--topologies 2p2d 3p1d 1p3d] [--router sglang-router]
                                       [--shared-prefix GROUPS TOKENS] [--router-args=ARG ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_pd.measure import Measurer  # noqa: E402
from pytest_pd.sim.model import SimParams  # noqa: E402
from pytest_pd.twin.observed import NotModelled, observe, predict_spread  # noqa: E402
from tests.helpers.twin_truth import DOUBLE, HIDDEN, SEED, STATS, write_cluster  # noqa: E402

PRE = {"tp": 4, "chunked_prefill_size": 16384}
DEC = {"tp": 4}
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
    ap.add_argument(
        "--shared-prefix",
        type=int,
        nargs=2,
        metavar=("GROUPS", "TOKENS"),
        help="prompts in GROUPS groups sharing their first TOKENS tokens",
    )
    ap.add_argument("--router-args", nargs="*", default=[], help="more arguments for the router")
    args = ap.parse_args()
    params = dataclasses.replace(SimParams(), **HIDDEN)
    print(f"router {args.router}, hidden parameters {HIDDEN}, speedup {args.speedup:g}")
    print(f"{'run':<28}" + "".join(f"{s:>44}" for s in STATS))
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for topo in args.topologies:
            prefill, decode, workload = TOPOLOGIES[topo]
            if args.shared_prefix:
                groups, tokens = args.shared_prefix
                workload = dataclasses.replace(workload, prefix_groups=groups, prefix_len=tokens)
            for policy in args.policies:
                name = f"{topo}-{policy}".replace("_", "-")
                named = None if policy == "default" else policy
                write_cluster(folder, name, prefill, decode, 1, args.speedup, named)
                if args.router != "sglang-router" or args.router_args:
                    path = folder / f"{name}.yaml"
                    data = yaml.safe_load(path.read_text())
                    data["router"]["kind"] = args.router
                    data["router"]["extra_args"] = [*data["router"].get("extra_args", []), *args.router_args]
                    path.write_text(yaml.safe_dump(data, sort_keys=False))
                measurer = Measurer(folder, folder / "runs", None, say=lambda _: None)
                try:
                    run = observe(measurer.measure(measurer.spec(name), workload))
                except NotModelled as exc:
                    print(f"{name:<28}not modelled: {exc}")
                    continue
                finally:
                    measurer.close()
                mean, spread = predict_spread(params, run)
                cells = []
                for s in STATS:
                    m, p = run.measured[s], mean[s]
                    worst = max(worst, abs(p / m - 1))
                    cell = f"{p:.4g} vs {m:.4g} {100 * (p / m - 1):+5.1f}%"
                    if run.topology.random:
                        lo, hi = spread[s]
                        cell += f" [{lo:.4g}–{hi:.4g} {'in' if lo <= m <= hi else 'OUT'}]"
                    cells.append(f"{cell:>44}")
                print(f"{name:<28}" + "".join(cells), flush=True)
    print(f"largest error against the model's (mean) prediction: {100 * worst:.1f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
