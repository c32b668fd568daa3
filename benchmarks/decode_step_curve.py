"""The simulator's decode step time against batch size and context (the seed calibration, or a
profile), printed as a table and drawn as a chart: what the documentation (docs/simulator.md) shows.

    python benchmarks/decode_step_curve.py [--profile profiles/x.yaml] [--tp 8] [-o docs/decode-step.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pytest_pd.cluster.engines.sim.profile import load_profile  # noqa: E402
from pytest_pd.sim.model import SimParams, decode_step_time  # noqa: E402

BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
CONTEXTS = (1000, 7000, 32000)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", type=Path, help="a profile written by pytest-pd calibrate")
    ap.add_argument("--tp", type=int, default=8)
    ap.add_argument("-o", "--out", type=Path, default=Path("docs/decode-step.png"))
    args = ap.parse_args()
    params = load_profile(args.profile).sim_params() if args.profile else SimParams()

    print(f"decode step (ms) on TP{args.tp}; per-token ms in brackets")
    print("batch " + "".join(f"{f'ctx {c}':>22}" for c in CONTEXTS))
    for b in BATCHES:
        cells = []
        for c in CONTEXTS:
            ms = 1000 * decode_step_time(params, b, c, args.tp)
            cells.append(f"{ms:>12.1f} [{ms / b:6.2f}]")
        print(f"{b:>5} " + "".join(cells))

    fig, (steps, rates) = plt.subplots(1, 2, figsize=(10, 4))
    for c in CONTEXTS:
        ms = [1000 * decode_step_time(params, b, c, args.tp) for b in BATCHES]
        steps.plot(BATCHES, ms, marker="o", label=f"context {c}")
        tokens_per_s = [b / (m / 1000) for b, m in zip(BATCHES, ms, strict=True)]
        rates.plot(BATCHES, tokens_per_s, marker="o", label=f"context {c}")
    for ax, title, unit in (
        (steps, "decode step time", "ms per step"),
        (rates, "decode throughput", "output tokens/s"),
    ):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("running requests (batch)")
        ax.set_ylabel(unit)
        ax.set_title(f"{title}, TP{args.tp}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(f"chart: {args.out}")


if __name__ == "__main__":
    main()
