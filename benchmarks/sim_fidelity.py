"""Does the simulated cluster reproduce the seed report's table?

Runs the seed workload (6000 in / 1000 out, concurrency 16, 32 requests) for real against sim-pp2 and
sim-tp8 (simulated workers behind the real sglang-router) at each speedup given, and prints, per
topology, the seed's numbers, the timing model's pure discrete-event prediction and the measured
numbers scaled back to real time, with the error of each cell against the seed.

    python benchmarks/sim_fidelity.py --speedup 1 10
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
from pathlib import Path

import yaml

from pytest_pd.measure import Measurer
from pytest_pd.sim.closed_loop import (
    SEED_TABLE,
    SEED_TOPOLOGIES,
    SEED_WORKLOAD,
    simulate_closed_loop,
)
from pytest_pd.sim.model import SimParams
from pytest_pd.workload.spec import Workload

REPO = Path(__file__).resolve().parent.parent
TOPOLOGIES = {"pp2": ("sim-pp2", "PP=2 (TP=4, PP=2)"), "tp8": ("sim-tp8", "TP=8")}
COLUMNS = [
    ("TTFT (s)", "mean_ttft_s", "{:.2f}"),
    ("throughput (tok/s)", "output_throughput", "{:.1f}"),
    ("TPOT (ms)", "mean_tpot_ms", "{:.1f}"),
    ("mean latency (s)", "mean_e2e_latency_s", "{:.2f}"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_cluster(src: Path, dest: Path, speedup: float) -> None:
    """A copy of a shipped sim cluster at ``speedup``, on free ports."""
    data = yaml.safe_load(src.read_text())
    data["model"]["path"] = str((src.parent / data["model"]["path"]).resolve())
    data["sim"] = {**data.get("sim", {}), "speedup": speedup}
    data["prefill"][0].update(port=free_port(), bootstrap_port=free_port())
    data["decode"][0]["port"] = free_port()
    data["router"].update(port=free_port(), prometheus_port=free_port())
    (dest / src.name).write_text(yaml.safe_dump(data, sort_keys=False))


def measured_row(metrics: dict) -> dict[str, float]:
    """bench_serving metrics (already scaled back to real time) -> the seed table's units."""
    return {
        "mean_ttft_s": metrics["mean_ttft_ms"] / 1000,
        "output_throughput": metrics["output_throughput"],
        "mean_tpot_ms": metrics["mean_tpot_ms"],
        "mean_e2e_latency_s": metrics["mean_e2e_latency_ms"] / 1000,
    }


def cell(value: float, seed: float | None, fmt: str) -> str:
    text = fmt.format(value)
    return text if seed is None else f"{text} ({(value - seed) / seed * 100:+.1f} %)"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--speedup",
        type=float,
        nargs="+",
        default=[10.0],
        help="speedups to measure at (default: 10, the shipped sim clusters' value)",
    )
    args = parser.parse_args()
    workload = Workload(**SEED_WORKLOAD)
    worst = 0.0
    for speedup in args.speedup:
        rows: dict[str, dict[str, dict[str, float]]] = {}
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            for name, _ in TOPOLOGIES.values():
                write_cluster(REPO / "clusters" / f"{name}.yaml", folder, speedup)
            measurer = Measurer(folder, folder / "runs", None, say=lambda t: print(t, file=sys.stderr))
            try:
                for key, (name, _) in TOPOLOGIES.items():
                    spec = measurer.spec(name)
                    m = measurer.measure(spec, workload)
                    if m.metrics["failed"]:
                        print(f"{name}: {m.metrics['failed']} requests failed: {m.metrics['errors_by_kind']}")
                        return 1
                    prefill, decode = SEED_TOPOLOGIES[key]
                    rows[key] = {
                        "seed": SEED_TABLE[key],
                        "model": simulate_closed_loop(SimParams(), prefill, decode, **SEED_WORKLOAD),
                        "measured": measured_row(m.metrics),
                    }
            finally:
                measurer.close()
        print(
            f"\n== seed workload {workload.id}, simulated at speedup {speedup:g}, "
            "measured times scaled back to real time =="
        )
        header = ["config", "source"] + [c[0] for c in COLUMNS]
        lines = [header]
        for key, (_, label) in TOPOLOGIES.items():
            seed = rows[key]["seed"]
            for source in ("seed", "model", "measured"):
                values = rows[key][source]
                lines.append(
                    [label if source == "seed" else "", source]
                    + [cell(values[k], None if source == "seed" else seed[k], fmt) for _, k, fmt in COLUMNS]
                )
                if source == "measured":
                    worst = max(worst, *(abs(values[k] - seed[k]) / seed[k] for _, k, _ in COLUMNS))
        widths = [max(len(r[i]) for r in lines) for i in range(len(header))]
        for r in lines:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
        print("PP=2 vs TP=8:", end="")
        for title, k, _ in COLUMNS:
            parts = []
            for source in ("seed", "model", "measured"):
                pp, tp = rows["pp2"][source][k], rows["tp8"][source][k]
                parts.append(f"{source} {(pp - tp) / tp * 100:+.1f} %")
            print(f"\n  {title}: " + ", ".join(parts), end="")
        print()
    print(f"\nlargest measured error against the seed: {worst * 100:.1f} % (target: within 5 %)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
