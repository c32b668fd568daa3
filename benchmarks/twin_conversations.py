"""Are conversations predicted? Simulated workers with hidden timing parameters behind the real
sglang-router on its default policy (2P1D), eight four-turn conversations that resend each
answer (``tests/helpers/twin_truth.CONVERSATIONS``), measured ``--runs`` times; the model with
the hidden parameters (no fit) predicts each run as 32 draws of the router's choices. Prints,
per run and statistic, the measured value against the draws' mean and how far it lies outside
their 5th-95th percentile range, then the spread over the runs — what
``tests/e2e/test_twin_conversations.py``'s bounds are set from.

    python benchmarks/twin_conversations.py [--runs 10] [--speedup 10]
    python benchmarks/twin_conversations.py --eviction [--runs 10]

``--eviction``: instead, sim-pp2 with its prefill's KV pool cut to 16 384 tokens under eight
growing conversations at once (``twin_truth.evicting_run``); prints the measured and predicted
prefix-cache hit rate of each run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_pd.twin.observed import HIT_RATE, predict  # noqa: E402
from tests.helpers.twin_truth import JUDGED, conversation_run, evicting_run  # noqa: E402


def eviction(runs: int, max_running: int) -> int:
    errors = []
    for k in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            run, params = evicting_run(Path(tmp), say=lambda _: None, max_running=max_running)
        measured, predicted = run.measured[HIT_RATE], predict(params, run)[HIT_RATE]
        errors.append(predicted / measured - 1)
        print(
            f"{k:<3} hit rate measured {measured:.4f} predicted {predicted:.4f} {errors[-1]:+6.1%}",
            flush=True,
        )
    sd = statistics.stdev(errors) if len(errors) > 1 else 0.0
    spread = f"[{min(errors):+.1%}, {max(errors):+.1%}]"
    print(f"predicted vs measured: mean {statistics.mean(errors):+.1%} sd {sd:.1%} {spread}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--speedup", type=float, default=10.0)
    ap.add_argument("--eviction", action="store_true", help="the eviction experiment instead")
    ap.add_argument("--max-running", type=int, default=3, help="--eviction: the prefill's pool / 8192")
    args = ap.parse_args()
    if args.eviction:
        return eviction(args.runs, args.max_running)
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
