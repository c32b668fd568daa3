"""Are conversations predicted? Simulated workers with hidden timing parameters behind the real
sglang-router on its default policy (2P1D), eight four-turn conversations that resend each
answer (``tests/helpers/twin_truth.CONVERSATIONS``), measured ``--runs`` times; the model with
the hidden parameters (no fit) predicts each run as 32 draws of the router's choices. Prints,
per run and statistic, the measured value against the draws' mean and how far it lies outside
their 5th-95th percentile range, then the spread over the runs — what
``tests/e2e/test_twin_conversations.py``'s bounds are set from.

    python benchmarks/twin_conversations.py [--runs 10] [--speedup 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.twin_truth import JUDGED, conversation_run  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--speedup", type=float, default=10.0)
    args = ap.parse_args()
    errors: dict[str, list[float]] = {s: [] for s in JUDGED}
    outside: dict[str, list[float]] = {s: [] for s in JUDGED}
    print(f"{'run':<5}" + "".join(f"{s:>36}" for s in JUDGED))
    for k in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            got = conversation_run(Path(tmp), args.speedup, say=lambda _: None)
        cells = []
        for s in JUDGED:
            errors[s].append(got.error(s))
            outside[s].append(got.outside(s))
            value = f"{got.run.measured[s]:10.4g} vs {got.mean[s]:10.4g}"
            cells.append(f"{value} {got.error(s):+6.1%} out {got.outside(s):+5.1%}")
        print(f"{k:<5}" + "".join(f"{c:>36}" for c in cells), flush=True)
    print(
        "\nover the runs: error against the draws' mean (mean, sd, min, max); "
        "largest distance outside the range"
    )
    for s in JUDGED:
        e = errors[s]
        sd = statistics.stdev(e) if len(e) > 1 else 0.0
        far = max(outside[s], key=abs)
        spread = f"[{min(e):+6.1%}, {max(e):+6.1%}]"
        print(f"  {s:<24} {statistics.mean(e):+6.1%} sd {sd:5.1%}  {spread}  outside {far:+5.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
