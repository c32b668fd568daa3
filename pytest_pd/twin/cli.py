"""`pytest-pd calibrate`: fit the timing model to the stored runs of one or more clusters and write
the result as a profile.

    pytest-pd calibrate --cluster h20-pp2 --cluster h20-tp8 -o profiles/h20-dsv32.yaml

Takes, per cluster, the newest sound stored run of each workload (or of ``--workload`` only),
fits ``--fit`` (default: the prefill rate and per-batch cost, the KV hand-off, TP scaling and the
decode step's two terms) starting from ``--profile`` (default: the seed's H20 calibration), prints
measured against fitted per run and statistic, and writes the profile with its sources and fit
error. Exit status: 0 written, 2 for a usage error or runs that cannot identify a parameter."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Any

from pytest_pd.cluster.engines.sim.profile import (
    Profile,
    ProfileError,
    SourceRun,
    load_profile,
    profile_of,
    save_profile,
)
from pytest_pd.record import RunRecord
from pytest_pd.results import iter_results, usable

from .calibrate import DEFAULT_FIT, Calibration, NotIdentifiable, calibrate
from .observed import STATS, NotModelled, Observed, observe


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "calibrate",
        help="fit the timing model to stored runs; write a profile",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--cluster", action="append", required=True, help="a cluster whose stored runs to fit (repeat)"
    )
    p.add_argument(
        "--workload", action="append", default=[], help="only this workload id (repeat); default: all"
    )
    p.add_argument(
        "--results-dir", type=Path, default=Path("results"), help="the results store (default: ./results)"
    )
    p.add_argument("--fit", default=",".join(DEFAULT_FIT), help="comma-separated parameters to fit")
    p.add_argument("--profile", type=Path, default=None, help="start from this profile (default: the seed's)")
    p.add_argument("--name", default=None, help="the profile's name (default: the output file's stem)")
    p.add_argument("-o", "--output", type=Path, required=True, help="where to write the profile (YAML)")
    return p


def newest_runs(results_dir: Path, clusters: list[str], workloads: list[str]) -> list[RunRecord]:
    """Per cluster and workload, the newest sound stored run."""
    newest: dict[tuple[str, str], RunRecord] = {}
    for run in iter_results(results_dir):
        key = (run.cluster.name, run.workload.id)
        if key[0] not in clusters or (workloads and key[1] not in workloads) or not usable(run):
            continue
        if key not in newest or run.started_at > newest[key].started_at:
            newest[key] = run
    return [newest[k] for k in sorted(newest)]


def table(cal: Calibration, runs: list[Observed]) -> str:
    lines = [f"{'run':<40} {'statistic':<18} {'measured':>10} {'fitted':>10} {'error':>8}"]
    for run in runs:
        for stat in STATS:
            if stat in run.measured and stat in cal.errors[run.label]:
                m, e = run.measured[stat], cal.errors[run.label][stat]
                lines.append(f"{run.label:<40} {stat:<18} {m:>10.4g} {m * (1 + e):>10.4g} {100 * e:>+7.1f}%")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    say = print
    try:
        start = load_profile(args.profile) if args.profile else None
        records = newest_runs(args.results_dir, args.cluster, args.workload)
        missing = sorted(set(args.cluster) - {r.cluster.name for r in records})
        if missing:
            raise ValueError(
                f"no sound stored run of {', '.join(missing)} in {args.results_dir}; run its suite "
                f"first (pytest suites/ --cluster={missing[0]} --pd-results-dir={args.results_dir})"
            )
        observed = []
        for record in records:
            try:
                observed.append(observe(record))
            except NotModelled as exc:
                say(f"skipped: {exc}")
        fit = [name.strip() for name in args.fit.split(",") if name.strip()]
        cal = calibrate(observed, start.sim_params() if start else None, fit)
    except (ProfileError, NotIdentifiable, ValueError) as exc:
        print(f"pytest-pd calibrate: {exc}", file=sys.stderr)
        return 2
    base = start.sim_params() if start else None
    say(table(cal, observed))
    say(f"largest error {100 * cal.max_error:.1f} % over {len(observed)} run(s)")
    for name in cal.fitted:
        before = getattr(base, name) if base else getattr(type(cal.params)(), name)
        say(f"  {name}: {before:.4g} -> {getattr(cal.params, name):.4g}")
    profile: Profile = profile_of(
        cal.params,
        args.name or args.output.stem,
        description=f"fitted to {', '.join(r.label for r in observed)}",
        fitted=list(cal.fitted),
        sources=[
            SourceRun(
                path=str(r.path or ""),
                cluster=r.cluster.name,
                workload=r.workload.id,
                started_at=r.started_at_iso or "",
            )
            for r in records
        ],
        fit_error={k: {s: round(e, 5) for s, e in v.items()} for k, v in cal.errors.items()},
        created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )
    save_profile(profile, args.output)
    say(f"profile: {args.output}")
    return 0
