"""A metric's history as points in time: one point per night (UTC day; a rerun the same night
joins its night's point) or per run. A point's value is the median of its runs' values (each run's
value is already the median of its repeats); its interval spans the runs' repeats. Runs that did
not complete or whose numbers are unsound (failed requests, length mismatches) are left out and
counted. Pure."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from pytest_pd.store.summary import StoredRun

PER = ("night", "run")


@dataclass(frozen=True)
class Point:
    label: str  # the night (2026-11-28) or the run's start time (2026-11-28 02:00:13)
    value: float
    low: float  # the smallest repeat (or run) value of the point
    high: float
    runs: tuple[StoredRun, ...]  # oldest first
    partner: tuple[StoredRun, ...] = ()  # a ratio's point: the baseline's runs of that night

    @property
    def first(self) -> StoredRun:
        return self.runs[0]

    @property
    def last(self) -> StoredRun:
        return self.runs[-1]


@dataclass(frozen=True)
class Series:
    cluster: str
    key: str
    metric: str
    points: tuple[Point, ...]
    excluded: tuple[str, ...] = field(default=())  # why runs were left out, one line each

    @property
    def values(self) -> list[float]:
        return [p.value for p in self.points]


def night_of(started_at: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(started_at))


def run_label(started_at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started_at))


def _value(run: StoredRun, metric: str) -> float | None:
    value = run.metrics.get(metric)
    return value if value is not None and math.isfinite(value) else None


def build_series(runs: Sequence[StoredRun], metric: str, per: str = "night") -> Series:
    """The series of ``metric`` over ``runs`` (one cluster and key), oldest first."""
    if per not in PER:
        raise ValueError(f"history points per {per!r}: use one of {', '.join(PER)}")
    ordered = sorted(runs, key=lambda r: r.started_at)
    excluded: list[str] = []
    groups: dict[str, list[StoredRun]] = {}
    for run in ordered:
        if not run.sound:
            why = run.failure or "; ".join(run.problems)
            excluded.append(f"{run_label(run.started_at)} ({run.path}): {why}")
            continue
        if _value(run, metric) is None:
            continue
        label = night_of(run.started_at) if per == "night" else run_label(run.started_at)
        groups.setdefault(label if per == "night" else f"{label}#{run.path}", []).append(run)
    points = []
    for label, members in groups.items():
        values = [v for r in members if (v := _value(r, metric)) is not None]
        spread = [x for r in members for x in r.samples.get(metric, ())] or values
        points.append(
            Point(label.split("#")[0], statistics.median(values), min(spread), max(spread), tuple(members))
        )
    cluster = ordered[0].cluster if ordered else ""
    key = ordered[0].key if ordered else ""
    return Series(cluster, key, metric, tuple(points), tuple(excluded))


def _pairing(point: Point, per: str) -> str:
    """Which baseline point a candidate point is compared with: the same night, or (per run) the
    same session's run (a live baseline runs after its candidate, seconds later)."""
    return (point.first.session or point.label) if per == "run" else point.label


def ratio_series(candidate: Series, baseline: Series, per: str = "night") -> Series:
    """candidate / baseline on the points (nights, or sessions per run) both have: the comparison
    the threshold markers make, followed over time."""
    base = {_pairing(p, per): p for p in baseline.points}
    points = []
    for p in candidate.points:
        b = base.get(_pairing(p, per))
        if b is None or b.value == 0:
            continue
        low = p.low / b.high if b.high else math.nan
        high = p.high / b.low if b.low else math.nan
        points.append(Point(p.label, p.value / b.value, low, high, p.runs, b.runs))
    return Series(
        candidate.cluster,
        candidate.key,
        f"{candidate.metric}/{baseline.cluster}",
        tuple(points),
        candidate.excluded + baseline.excluded,
    )
