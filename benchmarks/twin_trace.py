"""Does the timing model predict a trace replay — prompts sharing prefixes through the prefill
servers' prefix cache? Replays the shipped synthetic trace (suites/traces/synthetic-1000.jsonl,
half its prompt tokens a prefix an earlier request sent) for real on sim-pp2 and sim-tp8
(simulated workers behind the real sglang-router), then predicts each run from its record with
the cluster's own timing parameters (no fit: the prefix cache's model is under test), and prints
predicted against measured TTFT median/p90, TPOT, throughput and prefix-cache hit rate.

    python benchmarks/twin_trace.py [--requests 80 300] [--repeats 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_pd.measure import Measurer  # noqa: E402
from pytest_pd.twin.capacity import model_of  # noqa: E402
from pytest_pd.twin.observed import HIT_RATE, observe, predict  # noqa: E402
from pytest_pd.workload.spec import Workload  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TRACE = Workload(
    trace_path=str(REPO / "suites" / "traces" / "synthetic-1000.jsonl"), num_requests=1000, concurrency=512
)
SHOWN = ("median_ttft_ms", "p90_ttft_ms", "mean_tpot_ms", "output_throughput", HIT_RATE)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, nargs="+", default=[80, 300])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--clusters", nargs="+", default=["sim-pp2", "sim-tp8"])
    args = ap.parse_args()
    worst: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        measurer = Measurer(REPO / "clusters", Path(tmp) / "runs", None, say=lambda _: None)
        try:
            print(f"{'run':<34}" + "".join(f"{s:>30}" for s in SHOWN))
            for name in args.clusters:
                spec = measurer.spec(name)
                params = model_of(spec)
                assert params is not None
                for n in args.requests:
                    for _ in range(args.repeats):
                        measurer.forget()
                        run = observe(measurer.measure(spec, dataclasses.replace(TRACE, num_requests=n)))
                        got = predict(params, run)
                        cells = []
                        for s in SHOWN:
                            m, p = run.measured.get(s), got.get(s)
                            if m is None or p is None or m <= 0:
                                cells.append(f"{'—':>30}")
                                continue
                            worst[s] = max(worst.get(s, 0.0), abs(p / m - 1))
                            cells.append(f"{p:>10.4g} vs {m:>10.4g} {100 * (p / m - 1):+6.1f}%")
                        print(f"{name + f' n={n}':<34}" + "".join(cells), flush=True)
        finally:
            measurer.close()
    print("largest error: " + ", ".join(f"{s} {100 * e:.1f} %" for s, e in worst.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
