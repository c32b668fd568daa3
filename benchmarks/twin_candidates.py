"""How many candidate topologies the timing model evaluates per minute: every xPyD topology that
fits on two 8-GPU nodes (``sim/candidates.py``: prefill TP x PP x chunked-prefill size, decode TP,
any counts), each evaluated on the seed workload (6000 in / 1000 out, concurrency 16, 32 requests)
as a discrete-event simulation (``sim/closed_loop.simulate``), in one process.

    .venv/bin/python benchmarks/twin_candidates.py [--nodes 2 --gpus-per-node 8]   # nothing asserted

The target (the digital-twin issue): at least 500 candidates in under a minute on this 2-core
machine. Prints the count, the time, the rate, and the five best by output throughput per GPU
(default parameters: the seed's H20 calibration; every candidate is simulated, memory is not
checked here — `pytest-pd plan` drops what does not fit before simulating).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_pd.sim.candidates import candidate_topologies, describe, gpu_count  # noqa: E402
from pytest_pd.sim.closed_loop import SEED_WORKLOAD, simulate  # noqa: E402
from pytest_pd.sim.model import SimParams  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=2)
    ap.add_argument("--gpus-per-node", type=int, default=8)
    args = ap.parse_args()
    params = SimParams()
    n = SEED_WORKLOAD["num_requests"]
    lens_in, lens_out = [SEED_WORKLOAD["input_len"]] * n, [SEED_WORKLOAD["output_len"]] * n
    t0 = time.perf_counter()
    topologies = list(candidate_topologies(args.nodes, args.gpus_per_node))
    enumerated = time.perf_counter() - t0
    scored = []
    t0 = time.perf_counter()
    for topo in topologies:
        r = simulate(params, topo, lens_in, lens_out, concurrency=SEED_WORKLOAD["concurrency"])
        scored.append((r["output_throughput"] / gpu_count(topo), r, topo))
    took = time.perf_counter() - t0
    print(
        f"{len(topologies)} candidate topologies on {args.nodes} x {args.gpus_per_node} GPUs "
        f"(enumerated in {enumerated:.2f} s)"
    )
    print(
        f"evaluated in {took:.1f} s: {len(topologies) / took * 60:.0f} candidates per minute, "
        f"{1000 * took / len(topologies):.1f} ms each"
    )
    print("best output throughput per GPU on the seed workload (memory not checked; `pytest-pd plan`")
    print("keeps only what fits, for DeepSeek-V3 8 GPUs per server):")
    for per_gpu, r, topo in sorted(scored, key=lambda s: -s[0])[:5]:
        print(
            f"  {describe(topo):<40} {gpu_count(topo):>2} GPUs  {per_gpu:6.1f} tok/s/GPU  "
            f"TTFT {r['mean_ttft_s']:.2f} s  TPOT {r['mean_tpot_ms']:.1f} ms"
        )


if __name__ == "__main__":
    main()
