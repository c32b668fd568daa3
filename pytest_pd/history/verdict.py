"""The history verdict: for each followed metric of a cluster and workload, the change points of
its series, each with what changed at it, and whether one in the worse direction is still open
(within the last ``recent`` points): a regression the session warns of or fails on. Pure."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pytest_pd.catalog import CATALOG, judgeable
from pytest_pd.history.changepoints import (
    DEFAULT_MAX_PVALUE,
    DEFAULT_MIN_MAGNITUDE,
    DEFAULT_WINDOW,
    ChangePoint,
    change_points,
)
from pytest_pd.history.changes import Change, summary_line, what_changed
from pytest_pd.history.series import Series, build_series, ratio_series
from pytest_pd.store.summary import StoredRun

MODES = ("off", "warn", "fail")


@dataclass(frozen=True)
class HistorySettings:
    mode: str = "warn"  # off | warn | fail
    max_pvalue: float = DEFAULT_MAX_PVALUE
    min_magnitude: float = DEFAULT_MIN_MAGNITUDE
    recent: int = 7  # a regression is open while its change point is among the last `recent` points
    confirm: int = 2  # ... and once this many points follow it: one odd night alone is no regression
    per: str = "night"  # a point per night (UTC day) or per run
    window: int = DEFAULT_WINDOW
    max_points: int = 120  # the newest points analysed
    metrics: tuple[str, ...] = ()  # the metrics followed; empty: the catalog's history metrics

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"history mode {self.mode!r}: use one of {', '.join(MODES)}")
        if not isinstance(self.max_pvalue, (int, float)) or not 0 < self.max_pvalue < 1:
            raise ValueError(f"history significance {self.max_pvalue!r}: a p-value between 0 and 1")
        if not isinstance(self.min_magnitude, (int, float)) or not 0 <= self.min_magnitude < 1:
            raise ValueError(
                f"history min_change {self.min_magnitude!r}: a share between 0 and 1 (0.01 for 1 %)"
            )
        if self.recent < 1 or self.confirm < 1 or self.max_points < 3 or self.window < 4:
            raise ValueError("history: recent >= 1, confirm >= 1, max_points >= 3 and window >= 4")


@dataclass(frozen=True)
class Finding:
    """One change point of one series, with what changed at it."""

    cluster: str
    key: str
    metric: str
    per: str
    since: str  # label of the first point after the change
    before: str  # label of the last point before it
    position: int  # 1-based position of `since` in the series analysed
    points: int
    change: float
    interval: tuple[float, float]
    pvalue: float
    worse: bool  # in the metric's worse direction
    recent: bool  # among the newest `recent` points
    confirmed: bool = True  # at least `confirm` points follow it
    open: bool = False  # the series' open regression (see series_findings)
    mean_before: float = math.nan
    mean_after: float = math.nan
    changes: tuple[Change, ...] = field(default=())
    excluded: int = 0  # runs left out of the series (failed or unsound)
    first_run: str = ""  # results file of the first run after the change
    last_run_before: str = ""

    @property
    def regression(self) -> bool:
        """The series' open regression: what warns or fails."""
        return self.open

    @property
    def word(self) -> str:
        if self.open:
            return "REGRESSION"
        if self.worse and self.recent and not self.confirmed:
            return "possible regression (to be confirmed)"
        return "regression (closed)" if self.worse else "improvement"

    @property
    def headline(self) -> str:
        lo, hi = self.interval
        p = "p < 0.001" if self.pvalue < 0.001 else f"p = {self.pvalue:.3f}"
        since = self.points - self.position + 1
        return (
            f"{self.word} since {self.since} ({self.per} {self.position} of {self.points}; "
            f"{since} {self.per}{'s' if since > 1 else ''} since): "
            f"{self.metric} {self.change * 100:+.1f} % [{lo * 100:+.1f}, {hi * 100:+.1f}] ({p})"
        )

    @property
    def changed_line(self) -> str:
        return f"what changed between {self.before} and {self.since}: {summary_line(list(self.changes))}"

    @property
    def text(self) -> str:
        out = f"{self.headline}\n  {self.changed_line}"
        if self.excluded:
            out += f"\n  ({self.excluded} run(s) left out of the series: failed or unsound)"
        return out

    def to_dict(self) -> dict[str, object]:
        return {
            "cluster": self.cluster,
            "workload": self.key,
            "metric": self.metric,
            "per": self.per,
            "since": self.since,
            "before": self.before,
            "position": self.position,
            "points": self.points,
            "change_pct": self.change * 100,
            "interval_pct": [self.interval[0] * 100, self.interval[1] * 100],
            "pvalue": self.pvalue,
            "worse": self.worse,
            "recent": self.recent,
            "confirmed": self.confirmed,
            "open": self.open,
            "regression": self.regression,
            "word": self.word,
            "changes": [c.to_dict() for c in self.changes],
            "excluded_runs": self.excluded,
            "first_run": self.first_run,
            "last_run_before": self.last_run_before,
        }


def _better(metric: str) -> str | None:
    """ "higher", "lower" or None (no better direction: not judged) of a series' metric; a ratio
    series (metric/baseline) goes its metric's way."""
    name = metric.split("/", 1)[0]
    return CATALOG[name].better if name in CATALOG else None


def _mark_open(findings: list[Finding], min_magnitude: float) -> list[Finding]:
    """The newest change that is worse, recent and confirmed is the series' open regression,
    unless the series has since come back to within ``min_magnitude`` of the level before it
    (a later change that is not yet confirmed, or a partial recovery, does not hide it)."""
    if not findings:
        return findings
    level = findings[-1].mean_after  # where the series is now
    for n in range(len(findings) - 1, -1, -1):
        f = findings[n]
        if f.worse and f.recent and f.confirmed:
            now = level / f.mean_before - 1.0 if f.mean_before else math.nan
            still = now >= min_magnitude if f.change > 0 else now <= -min_magnitude
            if still:
                findings[n] = dataclasses.replace(f, open=True)
            break
    return findings


def series_findings(series: Series, settings: HistorySettings) -> list[Finding]:
    """The change points of one series as findings, oldest first."""
    points = series.points[-settings.max_points :]
    found: list[ChangePoint] = change_points(
        [p.value for p in points],
        max_pvalue=settings.max_pvalue,
        min_magnitude=settings.min_magnitude,
        window=settings.window,
    )
    better = _better(series.metric)
    if better is None:
        return []
    higher = better == "higher"
    out: list[Finding] = []
    for cp in found:
        if math.isnan(cp.change):
            continue
        before, after = points[cp.index - 1], points[cp.index]
        out.append(
            Finding(
                cluster=series.cluster,
                key=series.key,
                metric=series.metric,
                per=settings.per,
                since=after.label,
                before=before.label,
                position=cp.index + 1,
                points=len(points),
                change=cp.change,
                interval=cp.interval,
                pvalue=cp.pvalue,
                worse=(cp.change < 0) if higher else (cp.change > 0),
                recent=cp.index >= len(points) - settings.recent,
                confirmed=len(points) - cp.index >= settings.confirm,
                mean_before=cp.mean_before,
                mean_after=cp.mean_after,
                changes=tuple(
                    what_changed(
                        before.last,
                        after.first,
                        before.partner[-1] if before.partner else None,
                        after.partner[0] if after.partner else None,
                    )
                ),
                excluded=len(series.excluded),
                first_run=after.first.path,
                last_run_before=before.last.path,
            )
        )
    return _mark_open(out, settings.min_magnitude)


def history_findings(
    runs: Sequence[StoredRun],
    metrics: Sequence[str],
    settings: HistorySettings,
    *,
    baseline_runs: Sequence[StoredRun] = (),
    ratio_metrics: Sequence[str] = (),
) -> list[Finding]:
    """Findings of every metric's series over ``runs`` (one cluster and key), and of the
    candidate/baseline ratio of ``ratio_metrics`` on the points both have."""
    if settings.mode == "off" or not runs:
        return []
    own = {metric: build_series(runs, metric, settings.per) for metric in metrics}
    out = [f for series in own.values() for f in series_findings(series, settings)]
    for metric in ratio_metrics if baseline_runs else ():
        cand = own.get(metric) or build_series(runs, metric, settings.per)
        base = build_series(baseline_runs, metric, settings.per)
        out += series_findings(ratio_series(cand, base, settings.per), settings)
    return out


def open_regressions(findings: Sequence[Finding]) -> list[Finding]:
    """The open regressions (at most one per series)."""
    return [f for f in findings if f.open]


MARKER = "pd_history"
MARKER_HELP = (
    "pd_history(mode='off'|'warn'|'fail', recent=7, min_change=0.01, pvalue=0.001, per='night'|'run', "
    "metrics=(...)): this test's history verdict over the session's --pd-history settings"
)
_MARKER_FIELDS = {
    "mode": "mode",
    "recent": "recent",
    "min_change": "min_magnitude",
    "pvalue": "max_pvalue",
    "per": "per",
    "metrics": "metrics",
}


def marker_settings(
    base: HistorySettings, args: Sequence[object], kwargs: Mapping[str, object]
) -> HistorySettings:
    """``base`` with a ``pd_history`` marker's arguments (its one positional argument is the mode)."""
    if len(args) > 1:
        raise ValueError(f"{MARKER}: one positional argument (the mode), got {len(args)}")
    given = dict(kwargs)
    if args:
        given.setdefault("mode", args[0])
    unknown = sorted(set(given) - set(_MARKER_FIELDS))
    if unknown:
        raise ValueError(
            f"{MARKER}: unknown argument(s) {', '.join(unknown)}; known: {', '.join(_MARKER_FIELDS)}"
        )
    if "per" in given and given["per"] not in ("night", "run"):
        raise ValueError(f"{MARKER}: per={given['per']!r}: use 'night' or 'run'")
    if "metrics" in given:
        metrics = given["metrics"]
        given["metrics"] = (metrics,) if isinstance(metrics, str) else tuple(metrics)  # type: ignore[arg-type]
        unknown = sorted(set(given["metrics"]) - judgeable())  # type: ignore[call-overload]
        if unknown:
            raise ValueError(f"{MARKER}: unknown metric(s) {', '.join(unknown)} (see pytest_pd/catalog.py)")
    return dataclasses.replace(base, **{_MARKER_FIELDS[k]: v for k, v in given.items()})  # type: ignore[arg-type]
