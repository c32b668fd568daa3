"""Sample the night-to-night noise of the shipped sim-pp2 seed workload on this machine: N
separate pytest sessions (each its own bring-up, as N nights would be), each measuring the
candidate sim-pp2 on the seed workload (in6000-out1000-c16-n32) with its baseline taken from the
store, every run stored in a scratch results folder. Prints each metric's relative spread and
writes the per-run values to ``benchmarks/data/sim_pp2_noise.json``, which
``benchmarks/history_power.py`` draws its nightly noise from.

    .venv/bin/python benchmarks/history_noise.py --sessions 30      # ~16 min on two cores
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pytest_pd.catalog import HISTORY_METRICS  # noqa: E402
from pytest_pd.results import find_runs  # noqa: E402

OUT = REPO / "benchmarks" / "data" / "sim_pp2_noise.json"
WORKLOAD = "in6000-out1000-c16-n32"


def session(results: Path, runs: Path, baseline: str) -> None:
    argv = [
        sys.executable, "-m", "pytest", "suites/test_pd_acceptance.py", "--cluster=sim-pp2",
        f"--pd-baseline={baseline}", f"--pd-results-dir={results}", f"--pd-run-dir={runs}",
        "-p", "no:cacheprovider", "-q", f"--html={runs / 'report.html'}", "-k", WORKLOAD,
    ]  # fmt: skip
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
    if done.returncode not in (0, 1):
        sys.exit(f"session failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, default=30)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pd-noise-") as tmp:
        results, runs = Path(tmp) / "results", Path(tmp) / "runs"
        start = time.monotonic()
        for n in range(args.sessions):
            session(results, runs, "live" if n == 0 else "stored")
            print(f"session {n + 1}/{args.sessions} done ({time.monotonic() - start:.0f} s)", flush=True)
        stored = find_runs(results, "sim-pp2", WORKLOAD, "sim-tiny")
    values = {m: [float(r.metrics[m]) for r in stored if m in r.metrics] for m in HISTORY_METRICS}
    print(f"\n{len(stored)} sim-pp2 runs of {WORKLOAD}, one per session (own bring-up each)")
    print(f"{'metric':<22}{'mean':>12}{'stdev':>12}{'rel. stdev':>12}")
    for metric, vals in values.items():
        mean, sd = statistics.fmean(vals), statistics.stdev(vals)
        print(f"{metric:<22}{mean:>12.4g}{sd:>12.4g}{sd / mean * 100:>11.2f}%")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"workload": WORKLOAD, "cluster": "sim-pp2", "runs": values}, indent=1))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
