"""The two change-point libraries the history could use, side by side on the same nightly series:
Apache Otava (``otava.analysis.compute_change_points``: E-divisive split over sliding windows with
a t-test, then Hunter's merge) and MongoDB's signal-processing-algorithms
(``energy_statistics.e_divisive``: the original E-divisive with a permutation test). Each is
given the same synthetic histories (noise drawn from ``benchmarks/data/sim_pp2_noise.json``, the
same seeds as ``history_power.py``) and judged by the same rule (a change point in the worse
direction, at least ``--min-change``, among the last 7 nights and followed by at least 2):
detection within 3 nights, false alarms per 100 stable nights, and the time per verdict.

Only numpy and the library are imported, so it runs in either environment (the two cannot share
one: signal-processing-algorithms 2.1.6 needs Python 3.11 exactly and numpy < 2, Otava 0.8.0
numpy 2.2):

    .venv/bin/python benchmarks/history_detectors.py --detector otava
    VENV_WITH_SPA/bin/python benchmarks/history_detectors.py --detector spa
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

NOISE = Path(__file__).resolve().parent / "data" / "sim_pp2_noise.json"
HIGHER_IS_BETTER = {"output_throughput"}


def otava_points(values: np.ndarray, pvalue: float, min_change: float) -> list[int]:
    from otava.analysis import compute_change_points

    found, _ = compute_change_points(
        values.tolist(), window_len=30, max_pvalue=pvalue, min_magnitude=min_change
    )
    return [int(cp.index) for cp in found]


def spa_points(values: np.ndarray, pvalue: float, min_change: float) -> list[int]:
    from signal_processing_algorithms.energy_statistics.energy_statistics import e_divisive

    return sorted(int(i) for i in e_divisive(values, pvalue=pvalue, permutations=100))


def flagged(values: np.ndarray, detect, pvalue: float, min_change: float, higher: bool) -> bool:
    points = detect(values, pvalue, min_change)
    bounds = [0, *points, values.size]
    for n, index in enumerate(points):
        before, after = values[bounds[n] : index].mean(), values[index : bounds[n + 2]].mean()
        change = after / before - 1.0
        worse = change < 0 if higher else change > 0
        if n == len(points) - 1:  # the newest change decides, as the history verdict does
            recent = index >= values.size - 7 and values.size - index >= 2
            return worse and recent and abs(change) >= min_change
    return False


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--detector", choices=("otava", "spa"), required=True)
    parser.add_argument("--metric", default="mean_tpot_ms")
    parser.add_argument("--histories", type=int, default=200)
    parser.add_argument("--pvalue", type=float, default=0.001)
    parser.add_argument("--min-change", type=float, default=0.01)
    args = parser.parse_args()
    detect = otava_points if args.detector == "otava" else spa_points
    raw = np.asarray(json.loads(NOISE.read_text())["runs"][args.metric], dtype=float)
    noise = raw / raw.mean() - 1.0
    higher = args.metric in HIGHER_IS_BETTER
    sign = -1.0 if higher else 1.0
    print(f"{args.detector}: {args.metric}, noise {noise.std(ddof=1) * 100:.2f} %, p <= {args.pvalue}, "
          f"change >= {args.min_change * 100:g} %, {args.histories} histories")  # fmt: skip
    seconds = []
    for kind, size in [("step", 0.01), ("step", 0.03), ("step", 0.05), ("creep", 0.005), ("stable", 0.0)]:
        within3, red, nights = 0, 0, 0
        for h in range(args.histories):
            rng = np.random.default_rng(h)
            start = int(rng.integers(30, 51)) if kind != "stable" else 80
            base = 1.0 + rng.choice(noise, size=80)
            shift = np.zeros(80)
            shift[start:] = size if kind == "step" else size * np.arange(1, 80 - start + 1)
            values = base * (1.0 + sign * shift)
            nights_to_5 = int(round(0.05 / size)) if kind == "creep" else 0
            last = {"stable": 80, "step": start + 3, "creep": start + nights_to_5}[kind]
            for t in range(10 if kind == "stable" else start, last):
                t0 = time.perf_counter()
                hit = flagged(values[: t + 1], detect, args.pvalue, args.min_change, higher)
                seconds.append(time.perf_counter() - t0)
                nights += 1
                red += hit
                if kind != "stable" and hit:
                    within3 += 1
                    break
        if kind == "stable":
            print(f"  stable: false alarms {100 * red / nights:.2f} per 100 nights")
        elif kind == "step":
            print(f"  step {size * 100:g} %: found within 3 nights in {100 * within3 / args.histories:.1f} %")
        else:
            share = 100 * within3 / args.histories
            print(f"  creep {size * 100:g} %/night: found before it added up to 5 % in {share:.1f} %")
    median, worst = statistics.median(seconds) * 1000, max(seconds) * 1000
    print(f"  time per verdict: median {median:.1f} ms, max {worst:.0f} ms")


if __name__ == "__main__":
    main()
