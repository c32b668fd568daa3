"""`pytest-pd history`: the series of a results store, their change points and what changed at
each, for people (a table) or scripts (``--json``). Exit status 1 while a regression is open, so a
cron job without pytest can alert on it; 2 for a usage or store error."""

from __future__ import annotations

import argparse
import calendar
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_pd.catalog import HISTORY_METRICS, judgeable
from pytest_pd.errors import PdError
from pytest_pd.history.series import build_series
from pytest_pd.history.verdict import HistorySettings, open_regressions, series_findings
from pytest_pd.results import parse_age
from pytest_pd.store.source import stored_runs
from pytest_pd.store.summary import StoredRun


def add_parser(sub: Any) -> None:
    text = "the nightly series of a results store: change points, what changed, open regressions"
    p = sub.add_parser("history", help=text, description=__doc__)
    p.add_argument(
        "--results-dir",
        type=Path,
        default=None,
        help="the results folder (default: results); with --results, its new runs are added to that "
        "index first (without, the shared index is only read)",
    )
    p.add_argument("--results", metavar="URL", default=None, help="a team's PostgreSQL index, postgresql://…")
    p.add_argument(
        "--origin", default=None, help="this folder's name in the --results index (as the sessions')"
    )
    p.add_argument("--cluster", action="append", default=[], help="only this cluster (repeatable)")
    p.add_argument(
        "--workload", action="append", default=[], help="only this workload id or key (repeatable)"
    )
    p.add_argument(
        "--metric", action="append", default=[], help=f"metrics (default: {', '.join(HISTORY_METRICS)})"
    )
    p.add_argument("--since", default=None, help="only runs since a date (2026-11-01) or an age (30d, 2w)")
    p.add_argument("--per", choices=("night", "run"), default="night", help="a point per night or per run")
    p.add_argument(
        "--recent", type=int, default=HistorySettings.recent, help="nights a regression stays open"
    )
    p.add_argument(
        "--min-change", type=float, default=HistorySettings.min_magnitude, help="e.g. 0.01 for 1 %%"
    )
    p.add_argument(
        "--pvalue", type=float, default=HistorySettings.max_pvalue, help="significance of a change"
    )
    p.add_argument("--json", action="store_true", help="print JSON for scripts and dashboards")


def since_time(text: str | None, now: float) -> float | None:
    if not text:
        return None
    try:
        return float(calendar.timegm(time.strptime(text, "%Y-%m-%d")))
    except ValueError:
        pass
    try:
        return now - parse_age(text)
    except ValueError:
        raise PdError(f"--since {text!r}: write a date (2026-11-01) or an age (30d, 2w)") from None


def analyse(
    runs: Sequence[StoredRun], metrics: Sequence[str], settings: HistorySettings
) -> list[dict[str, Any]]:
    """Every series of ``runs`` (per cluster, key and model) and metric, with its findings."""
    groups: dict[tuple[str, str, str | None], list[StoredRun]] = {}
    for run in runs:
        groups.setdefault((run.cluster, run.key, run.model), []).append(run)
    out = []
    for (cluster, key, model), members in sorted(
        groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or "")
    ):
        for metric in metrics:
            series = build_series(members, metric, settings.per)
            if not series.points:
                continue
            findings = series_findings(series, settings)
            out.append(
                {
                    "cluster": cluster,
                    "workload": key,
                    "model": model,
                    "metric": metric,
                    "points": [
                        {
                            "label": p.label,
                            "value": p.value,
                            "low": p.low,
                            "high": p.high,
                            "runs": [r.path for r in p.runs],
                        }
                        for p in series.points
                    ],
                    "excluded": list(series.excluded),
                    "change_points": [f.to_dict() for f in findings],
                    "regression": next((f.to_dict() for f in open_regressions(findings)), None),
                    "_findings": findings,
                }
            )
    return out


def _text(series: list[dict[str, Any]], where: str, n_runs: int) -> str:
    lines = [f"results: {where} ({n_runs} runs, {len(series)} series)"]
    last_group = None
    for s in series:
        group = (s["cluster"], s["workload"], s["model"])
        if group != last_group:
            pts = s["points"]
            lines += [
                "",
                f"{s['cluster']} · {s['workload']} · {s['model'] or '-'}  "
                f"({len(pts)} points, {pts[0]['label']} … {pts[-1]['label']})",
            ]
            last_group = group
        last = s["points"][-1]["value"]
        name = f"  {s['metric']:<22} last {last:>10.4g}  "
        findings = s["_findings"]
        if not findings:
            few = len(s["points"]) < 3
            lines.append(name + ("too few points to judge" if few else "no change point"))
        for n, f in enumerate(findings):
            lines.append((name if n == 0 else " " * len(name)) + f.headline)
            lines.append(" " * (len(name) + 2) + f.changed_line)
        if s["excluded"]:
            lines.append(" " * (len(name) + 2) + f"{len(s['excluded'])} run(s) left out: failed or unsound")
    open_ = [f"{s['cluster']} · {s['workload']} · {s['metric']}" for s in series if s["regression"]]
    lines += ["", f"{len(open_)} regression(s) open" + (": " + "; ".join(open_) if open_ else "")]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        settings = HistorySettings(
            per=args.per, recent=args.recent, min_magnitude=args.min_change, max_pvalue=args.pvalue
        )
        since = since_time(args.since, time.time())
        runs = [
            r
            for r in stored_runs(
                args.results_dir or Path("results"),
                args.results or None,
                args.origin,
                sync=not args.results or args.results_dir is not None,
                warn=lambda text: print(f"pytest-pd history: {text}", file=sys.stderr),
            )
            if (not args.cluster or r.cluster in args.cluster)
            and (not args.workload or r.key in args.workload)
            and (since is None or r.started_at >= since)
        ]
    except (PdError, ValueError) as exc:
        print(f"pytest-pd history: {exc}", file=sys.stderr)
        return 2
    unknown = sorted(set(args.metric) - judgeable())
    if unknown:
        print(f"pytest-pd history: unknown metric(s) {', '.join(unknown)}", file=sys.stderr)
        return 2
    series = analyse(runs, args.metric or HISTORY_METRICS, settings)
    where = args.results or str(args.results_dir or "results")
    if args.json:
        out = {
            "results": where,
            "runs": len(runs),
            "settings": {
                "per": settings.per,
                "recent": settings.recent,
                "min_change": settings.min_magnitude,
                "pvalue": settings.max_pvalue,
            },
            "series": [{k: v for k, v in s.items() if not k.startswith("_")} for s in series],
            "regressions": [s["regression"] for s in series if s["regression"]],
        }
        print(json.dumps(out, indent=1))
    else:
        print(_text(series, where, len(runs)))
    return 1 if any(s["regression"] for s in series) else 0
