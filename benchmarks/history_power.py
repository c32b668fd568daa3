"""Detection power of the history verdict on nightly series whose noise is this machine's.

Noise: the per-run values of ``benchmarks/data/sim_pp2_noise.json`` (``history_noise.py``: N
separate pytest sessions of the sim-pp2 seed workload, each its own bring-up). A synthetic night
is the metric's mean times (1 + a relative residual drawn from those runs, with replacement).

For each scenario, ``--histories`` histories of ``--nights`` nights: a step of 1, 2, 3, 5 or 10 %
or a creep of 0.25, 0.5 or 1 % per night (in the metric's worse direction) starting at a random
night between ``--warmup`` and ``--warmup + 20``; and stable histories. The verdict is evaluated
every night on the history so far, as a nightly job would: for the new verdict (change points,
``pytest_pd.history.verdict`` with the defaults of ``HistorySettings``) and for the old rule (worse
than the previous night by more than 5 %). Printed: the share of histories flagged within 3 nights
of the change (the night it starts counts as 1) and at all, the median delay in nights, for
creeps the share flagged before the creep added up to 5 %, and for stable histories the false
alarms per 100 nights (nights flagged, and alarms raised: a flagged night after an unflagged one).

    .venv/bin/python benchmarks/history_power.py                         # ~10 min on two cores
    .venv/bin/python benchmarks/history_power.py --histories 200 --metric mean_ttft_ms
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pytest_pd.catalog import higher_is_better  # noqa: E402
from pytest_pd.history.verdict import HistorySettings, history_findings, open_regressions  # noqa: E402
from pytest_pd.store.summary import StoredRun  # noqa: E402

NOISE = REPO / "benchmarks" / "data" / "sim_pp2_noise.json"
DAY = 86400.0
STEPS = (0.01, 0.02, 0.03, 0.05, 0.10)
CREEPS = (0.0025, 0.005, 0.01)


def residuals(metric: str, path: Path = NOISE) -> np.ndarray:
    values = np.asarray(json.loads(path.read_text())["runs"][metric], dtype=float)
    return values / values.mean() - 1.0


def history(
    rng: np.random.Generator, noise: np.ndarray, nights: int, start: int, kind: str, size: float, sign: float
) -> np.ndarray:
    base = 1.0 + rng.choice(noise, size=nights, replace=True)
    shift = np.zeros(nights)
    if kind == "step":
        shift[start:] = size
    elif kind == "creep":
        shift[start:] = size * np.arange(1, nights - start + 1)
    return base * (1.0 + sign * shift)


def runs_of(values: np.ndarray, metric: str) -> list[StoredRun]:
    return [
        StoredRun(
            path=f"night{i}", cluster="c", key="w", model=None, started_at=i * DAY, metrics={metric: float(v)}
        )
        for i, v in enumerate(values)
    ]


def new_rule(values: np.ndarray, metric: str, settings: HistorySettings) -> bool:
    return bool(open_regressions(history_findings(runs_of(values, metric), [metric], settings)))


def old_rule(values: np.ndarray, metric: str, band: float = 0.05) -> bool:
    change = values[-1] / values[-2] - 1.0
    return bool(-change > band if higher_is_better(metric) else change > band)


def one(
    job: tuple[int, str, str, float, int, int, int, str, dict[str, float]],
) -> dict[str, list[int | None]]:
    """Flag nights (relative to the change's first night, 1-based) of one history under each rule."""
    seed, metric, kind, size, nights, warmup, first_eval, path, knobs = job
    rng = np.random.default_rng(seed)
    noise = residuals(metric, Path(path))
    sign = -1.0 if higher_is_better(metric) else 1.0
    start = int(rng.integers(warmup, warmup + 21)) if kind != "stable" else nights
    values = history(rng, noise, nights, start, kind, size, sign)
    settings = HistorySettings(per="run", **knobs)
    flags: dict[str, list[int | None]] = {"new": [], "old": []}
    last = nights if kind == "stable" else min(nights, start + 20)
    for t in range(first_eval, last):
        seen = values[: t + 1]
        flags["new"].append(int(new_rule(seen, metric, settings)))
        flags["old"].append(int(old_rule(seen, metric)))
    flags["start"] = [start - first_eval]
    return flags


def summarise(kind: str, size: float, results: list[dict[str, list[int | None]]]) -> list[str]:
    rows = []
    for rule in ("new", "old"):
        if kind == "stable":
            nights = sum(len(r[rule]) for r in results)
            red = sum(sum(r[rule]) for r in results)  # type: ignore[arg-type]
            onsets = sum(
                sum(1 for i, f in enumerate(r[rule]) if f and (i == 0 or not r[rule][i - 1])) for r in results
            )
            rows.append(
                f"{'stable':<16}{rule:<5}{'':>42}{100 * red / nights:>10.2f}{100 * onsets / nights:>12.2f}"
            )
            continue
        delays = []
        for r in results:
            s = int(r["start"][0])  # type: ignore[arg-type]
            after = r[rule][s:]
            hit = next((i + 1 for i, f in enumerate(after) if f), None)
            delays.append(hit)
        found = [d for d in delays if d is not None]
        within3 = sum(1 for d in found if d <= 3) / len(delays)
        median = statistics.median(found) if found else float("nan")
        label = f"step {size * 100:g} %" if kind == "step" else f"creep {size * 100:g} %/n"
        before5 = ""
        if kind == "creep":
            limit = int(np.ceil(0.05 / size))  # nights until the creep adds up to 5 %
            before5 = f"{sum(1 for d in found if d < limit) / len(delays) * 100:.1f} %"
        rows.append(
            f"{label:<16}{rule:<5}{within3 * 100:>9.1f}%{len(found) / len(delays) * 100:>9.1f}%"
            f"{median:>10.1f}{before5:>12}"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--histories", type=int, default=1000)
    parser.add_argument("--metric", default="mean_tpot_ms")
    parser.add_argument("--nights", type=int, default=80)
    parser.add_argument("--warmup", type=int, default=30, help="stable nights before the earliest change")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--noise", type=Path, default=NOISE, help="per-run values (history_noise.py)")
    parser.add_argument("--pvalue", type=float, default=HistorySettings.max_pvalue)
    parser.add_argument("--min-change", type=float, default=HistorySettings.min_magnitude)
    parser.add_argument("--confirm", type=int, default=HistorySettings.confirm)
    args = parser.parse_args()
    noise = residuals(args.metric, args.noise)
    knobs = {"max_pvalue": args.pvalue, "min_magnitude": args.min_change, "confirm": args.confirm}
    settings = HistorySettings(**knobs)  # type: ignore[arg-type]
    print(
        f"metric {args.metric}: night-to-night noise {noise.std(ddof=1) * 100:.2f} % (relative stdev of "
        f"{noise.size} sim-pp2 sessions, {args.noise.name}); {args.histories} histories per scenario, "
        f"{args.nights} nights; new verdict: p <= {settings.max_pvalue}, magnitude >= "
        f"{settings.min_magnitude * 100:g} %, confirmed by {settings.confirm} nights, open for "
        f"{settings.recent} nights, window {settings.window}; "
        "old rule: worse than the previous night by > 5 %"
    )
    print(
        f"{'scenario':<16}{'rule':<5}{'<=3 nights':>10}{'found':>10}{'median':>10}{'before +5%':>12}"
        f"{'red/100n':>10}{'alarms/100n':>12}"
    )
    scenarios = [("step", s) for s in STEPS] + [("creep", c) for c in CREEPS] + [("stable", 0.0)]
    first_eval = 10
    with ProcessPoolExecutor(args.workers) as pool:
        for n, (kind, size) in enumerate(scenarios):
            jobs = [
                (
                    n * 1_000_000 + h,
                    args.metric,
                    kind,
                    size,
                    args.nights,
                    args.warmup,
                    first_eval,
                    str(args.noise),
                    knobs,
                )
                for h in range(args.histories)
            ]
            results = list(pool.map(one, jobs, chunksize=20))
            for row in summarise(kind, size, results):
                print(row, flush=True)


if __name__ == "__main__":
    main()
