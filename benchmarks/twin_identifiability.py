"""Can `pytest-pd calibrate` recover what it was never told? Simulated clusters run with hidden
timing parameters (not the seed calibration); the fit sees only the stored records of two of them
(the seed's PP2 and TP8 topologies, the seed workload) and predicts three others it never saw —
2P1D, TP4 prefill + TP4 decode, and 2P2D at twice the load — which are then measured.

    .venv/bin/python benchmarks/twin_identifiability.py [--speedup 10]   # a table; nothing asserted

Prints the fit error on the two runs it saw and, for the three it did not, predicted against
measured mean TTFT, TPOT and output throughput (model time). The target (the digital-twin issue):
every held-out number within 5 %. The router runs ``--policy round_robin`` (modelled as it is);
``--policy cache_aware`` (the router's default) shows what the model does not capture yet: with
token-id prompts the real router sent the 2P2D run's requests unevenly to its two decode servers
(TPOT twice the prediction).
"""

from __future__ import annotations

import argparse
import copy
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_pd.measure import Measurer  # noqa: E402
from pytest_pd.sim.model import SimParams  # noqa: E402
from pytest_pd.twin.calibrate import calibrate, relative_errors  # noqa: E402
from pytest_pd.twin.observed import observe  # noqa: E402
from pytest_pd.workload.spec import Workload  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_cluster(
    folder: Path,
    name: str,
    prefill: list[dict],
    decode: list[dict],
    prefill_pp: int,
    speedup: float,
    policy: str,
) -> None:
    data: dict[str, Any] = yaml.safe_load((REPO / "clusters" / "sim-pp2.yaml").read_text())
    data.pop("baseline", None)
    data["name"] = name
    data["model"]["path"] = str(REPO / "clusters" / "models" / "sim-tiny")
    data["sim"] = {**HIDDEN, "speedup": speedup}
    data["hosts"] = {"node": {"address": "127.0.0.1", "gpus": 64}}
    data["prefill"] = [
        {
            **copy.deepcopy(p),
            "host": "node",
            "port": free_port(),
            "bootstrap_port": free_port(),
            "disable_overlap_schedule": True,
        }
        for p in prefill
    ]
    data["decode"] = [{**d, "host": "node", "port": free_port(), "prefill_pp": prefill_pp} for d in decode]
    data["router"].update(host="node", port=free_port(), prometheus_port=free_port())
    # round robin is modelled as it is; the router's default cache-aware policy is not (see below)
    data["router"]["extra_args"] = [*data["router"].get("extra_args", []), "--policy", policy]
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--speedup", type=float, default=10.0)
    ap.add_argument(
        "--policy",
        default="round_robin",
        help="the router's --policy (default round_robin; cache_aware is the router's own default)",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, (pre, dec, pp, _, _) in TOPOLOGIES.items():
            write_cluster(folder, name, pre, dec, pp, args.speedup, args.policy)
        measurer = Measurer(folder, folder / "runs", None, say=lambda t: print(t, file=sys.stderr))
        records = {}
        try:
            for name, (_, _, _, workload, _) in TOPOLOGIES.items():
                records[name] = measurer.measure(measurer.spec(name), workload)
        finally:
            measurer.close()
    seen = [observe(records[n]) for n, t in TOPOLOGIES.items() if t[4]]
    unseen = [observe(records[n]) for n, t in TOPOLOGIES.items() if not t[4]]
    cal = calibrate(seen)
    print(
        f"hidden parameters: {HIDDEN}; simulated at speedup {args.speedup:g}, router --policy {args.policy}"
    )
    print(
        "fitted: "
        + ", ".join(f"{n} {getattr(SimParams(), n):.4g} -> {getattr(cal.params, n):.4g}" for n in cal.fitted)
    )
    print(f"fit error on the two runs it saw: largest {100 * cal.max_error:.1f} %")
    print(f"{'held-out run':<40} " + " ".join(f"{s:>30}" for s in STATS))
    worst = 0.0
    for run, errors in zip(unseen, relative_errors(cal.params, unseen).values(), strict=True):
        cells = []
        for s in STATS:
            m, e = run.measured[s], errors[s]
            worst = max(worst, abs(e))
            cells.append(f"{m * (1 + e):>10.4g} vs {m:>10.4g} {100 * e:+6.1f}%")
        print(f"{run.label:<40} " + " ".join(f"{c:>30}" for c in cells))
    print(f"largest held-out error: {100 * worst:.1f} % (target: within 5 %)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
