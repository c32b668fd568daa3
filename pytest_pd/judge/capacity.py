"""Capacity under an SLO: the highest load (concurrency or request rate) at which a run meets
every SLO with no failed request, found by measuring as few loads as possible — grow the load
geometrically until a point misses (bracketing), then bisect between the last pass and the first
miss until the bracket is narrow enough or the point budget is spent. Pure: the caller's
``evaluate`` measures (a real cluster) or simulates (the timing model) one load."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from pytest_pd.record import CapacitySearch, RunRecord, capacity_metric
from pytest_pd.workload.spec import Workload

from .slo import SloError, check_slos, slo_misses

LOADS = ("concurrency", "request_rate")
MARKER = "pd_capacity"
SLO_STATS = tuple(
    f"{stat}_{what}_ms"
    for what in ("ttft", "tpot", "itl", "e2e_latency")
    for stat in ("mean", "median", "p90", "p99")
) + ("output_throughput", "request_throughput", "goodput")
"""What a capacity SLO may bound: latency statistics from above, throughputs from below."""


@dataclass(frozen=True)
class CapacitySpec:
    """What ``@pytest.mark.pd_capacity(...)`` asks: the SLOs, what to vary and how to search."""

    slo: Mapping[str, float]
    over: str = "concurrency"
    start: float = 1.0
    growth: float = 2.0
    max_points: int = 8
    resolution: float = 0.1
    min_ratio: float | None = None
    """Shorthand for ``pd_threshold("capacity_<over>", min_ratio=…)``."""
    loads: tuple[float, ...] = ()
    """A sweep: measure exactly these loads, in order, instead of searching."""

    @property
    def search_settings(self) -> dict[str, float]:
        """How the search walks the load (empty for a sweep): two tests asking the same SLOs
        with other settings each get their own search (the loads both measure run once)."""
        if self.loads:
            return {}
        return {
            "start": self.start,
            "growth": self.growth,
            "max_points": self.max_points,
            "resolution": self.resolution,
        }

    def run(self, evaluate: Callable[[float], tuple[Mapping[str, float], int]]) -> Capacity:
        """The sweep of ``loads`` when given, else the search, with ``evaluate`` measuring a load."""
        if self.loads:
            return measure_loads(evaluate, self.slo, self.loads, over=self.over)
        return search(
            evaluate,
            self.slo,
            over=self.over,
            start=self.start,
            growth=self.growth,
            max_points=self.max_points,
            resolution=self.resolution,
        )


def capacity_spec(args: tuple[object, ...], kwargs: Mapping[str, object]) -> CapacitySpec:
    """The marker's arguments, checked; ValueError naming what is wrong and how to write it."""
    example = f'{MARKER}(slo={{"p90_ttft_ms": 2000, "p90_tpot_ms": 50}}, over="concurrency", min_ratio=0.95)'
    fields = {"slo", "over", "start", "growth", "max_points", "resolution", "min_ratio", "loads"}
    unknown = sorted(set(kwargs) - fields)
    loads = kwargs.get("loads", ())
    if not isinstance(loads, (list, tuple)) or not all(
        isinstance(x, (int, float)) and not isinstance(x, bool) and 0 < x < math.inf for x in loads
    ):
        raise ValueError(
            f"{MARKER}(loads=…) must be a list of loads > 0, e.g. loads=[1, 2, 4, 8]; got {loads!r}"
        )
    slo_given = kwargs.get("slo", {})
    if args or unknown or not isinstance(slo_given, Mapping) or not (slo_given or loads):
        raise ValueError(
            f"{MARKER} takes keyword arguments ({', '.join(sorted(fields))}) with slo= a "
            f"non-empty dict (optional for a sweep of loads=[…]), e.g. {example}"
        )
    try:
        slo = check_slos(slo_given, SLO_STATS)
    except SloError as exc:
        raise ValueError(f"{MARKER}: {exc}") from None
    values = {k: v for k, v in kwargs.items() if k not in ("slo", "loads")}
    for name, value in values.items():
        if name != "over" and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"{MARKER}({name}=…) must be a number, got {value!r}")
    spec = CapacitySpec(slo=slo, loads=tuple(float(x) for x in loads), **values)  # type: ignore[arg-type]
    if spec.over not in LOADS:
        raise ValueError(f"{MARKER}(over=…) must be one of {', '.join(LOADS)}, got {spec.over!r}")
    if not (spec.start > 0 and spec.growth > 1 and spec.max_points >= 2 and 0 < spec.resolution < 1):
        raise ValueError(f"{MARKER}: needs start > 0, growth > 1, max_points >= 2, 0 < resolution < 1")
    if spec.min_ratio is not None and not spec.min_ratio > 0:
        raise ValueError(f"{MARKER}(min_ratio=…) must be > 0, got {spec.min_ratio!r}")
    return spec


@dataclass(frozen=True)
class LoadPoint:
    load: float
    stats: Mapping[str, float]
    failed: int = 0
    misses: tuple[str, ...] = ()
    """Why this load is over capacity (SLO misses, failed requests); empty when it is within."""

    @property
    def ok(self) -> bool:
        return not self.misses


@dataclass(frozen=True)
class Capacity:
    over: str
    """What was varied: ``concurrency`` or ``request_rate``."""
    slo: Mapping[str, float]
    points: tuple[LoadPoint, ...] = field(default=())
    """Every load measured, in the order measured."""

    @property
    def capacity(self) -> float | None:
        """The highest load that met the SLOs below the lowest that did not (None: none met them)."""
        misses = [p.load for p in self.points if not p.ok]
        ceiling = min(misses, default=math.inf)
        passes = [p.load for p in self.points if p.ok and p.load < ceiling]
        return max(passes, default=None)

    @property
    def bracket(self) -> tuple[float | None, float | None]:
        """(capacity, the lowest load that missed): the true knee lies between them."""
        misses = [p.load for p in self.points if not p.ok]
        return self.capacity, min(misses, default=None)

    @property
    def limited_by_search(self) -> bool:
        """True when every load measured met the SLOs: the capacity is at least the figure given."""
        return all(p.ok for p in self.points)

    def curve(self) -> list[LoadPoint]:
        """The points by load (a latency-throughput curve)."""
        return sorted(self.points, key=lambda p: p.load)


def judge(load: float, stats: Mapping[str, float], failed: int, slo: Mapping[str, float]) -> LoadPoint:
    misses = slo_misses(stats, slo)
    if failed:
        misses.append(f"{failed} failed request(s)")
    return LoadPoint(load, dict(stats), failed, tuple(misses))


def measure_loads(
    evaluate: Callable[[float], tuple[Mapping[str, float], int]],
    slo: Mapping[str, float],
    loads: Sequence[float],
    *,
    over: str = "concurrency",
) -> Capacity:
    """A sweep: every load measured in order (concurrency rounded to whole requests, repeats
    dropped); the capacity is the highest load that met the SLOs below the lowest that missed."""
    if over not in LOADS:
        raise ValueError(f"a sweep varies one of {', '.join(LOADS)}, not {over!r}")
    points: list[LoadPoint] = []
    for load in dict.fromkeys(float(max(1, round(x))) if over == "concurrency" else float(x) for x in loads):
        points.append(judge(load, *evaluate(load), slo))
    return Capacity(over, dict(slo), tuple(points))


def search(
    evaluate: Callable[[float], tuple[Mapping[str, float], int]],
    slo: Mapping[str, float],
    *,
    over: str = "concurrency",
    start: float = 1.0,
    growth: float = 2.0,
    resolution: float = 0.1,
    max_points: int = 8,
    highest: float = math.inf,
) -> Capacity:
    """Find the capacity with at most ``max_points`` calls of ``evaluate(load) -> (statistics,
    failed requests)``. Concurrency is whole requests (the bracket closes at a step of 1);
    the search stops once the bracket is within ``resolution`` (relative) of its low end, and
    never goes above ``highest``. Deterministic for a deterministic ``evaluate``."""
    if over not in LOADS:
        raise ValueError(f"capacity is searched over one of {', '.join(LOADS)}, not {over!r}")
    if not (start > 0 and growth > 1 and max_points >= 2 and 0 < resolution < 1):
        raise ValueError("capacity search needs start > 0, growth > 1, max_points >= 2, 0 < resolution < 1")
    whole = over == "concurrency"
    points: list[LoadPoint] = []

    def measure(load: float) -> LoadPoint:
        point = judge(load, *evaluate(load), slo)
        points.append(point)
        return point

    def snap(load: float) -> float:
        return float(max(1, round(load))) if whole else load

    load = snap(min(start, highest))
    # bracketing: up while it holds, down while it does not
    point = measure(load)
    lo, hi = (load, None) if point.ok else (None, load)
    while len(points) < max_points:
        if lo is not None and hi is None:
            nxt = snap(min(lo * growth, highest))
            if whole:
                nxt = min(max(nxt, lo + 1), highest)  # a small growth still moves
            if nxt <= lo:
                break  # at the ceiling we were given
        elif hi is not None and lo is None:
            nxt = snap(hi / growth)
            if whole:
                nxt = min(nxt, hi - 1)
            if nxt >= hi or nxt < 1:
                break  # concurrency 1 misses: no capacity
        else:
            break
        point = measure(nxt)
        if point.ok:
            lo = nxt
        else:
            hi = nxt
    # bisection
    while lo is not None and hi is not None and len(points) < max_points:
        if (hi - lo) <= (1 if whole else 0) or (hi - lo) / lo <= resolution:
            break
        mid = snap((lo + hi) / 2) if not whole else float(math.floor((lo + hi) / 2))
        if mid <= lo or mid >= hi:
            break
        if measure(mid).ok:
            lo = mid
        else:
            hi = mid
    return Capacity(over, dict(slo), tuple(points))


POINT_STATS = (
    "completed",
    "failed",
    "request_throughput",
    "output_throughput",
    "mean_ttft_ms",
    "p90_ttft_ms",
    "mean_tpot_ms",
    "p90_tpot_ms",
)
"""What a stored capacity record keeps of each load (besides the SLOs' statistics)."""


def capacity_record(
    found: Capacity,
    runs: Mapping[float, RunRecord],
    workload: Workload,
    predicted: float | None = None,
    loads: Sequence[float] = (),
    search: Mapping[str, float] | None = None,
) -> RunRecord:
    """The record of a capacity search: the cluster, model and environment of its runs, metrics
    of the run at the capacity (else of the lowest load) plus ``capacity_<over>`` (NaN when no
    load met the SLOs), and every load with its statistics and results file."""
    capacity = found.capacity
    at = runs[capacity if capacity is not None else min(runs)]
    first, last = min(r.started_at for r in runs.values()), max(r.finished_at or 0.0 for r in runs.values())
    keep = set(POINT_STATS) | set(found.slo)
    points = [
        {
            "load": p.load,
            "stats": {k: v for k, v in p.stats.items() if k in keep},
            "failed": p.failed,
            "misses": list(p.misses),
            "path": runs[p.load].path,
        }
        for p in found.points
    ]
    low, high = found.bracket
    info = CapacitySearch(
        loads=list(loads),
        search=dict(search or {}),
        over=found.over,
        slo=dict(found.slo),
        points=points,
        capacity=capacity,
        bracket=[low, high],
        limited_by_search=found.limited_by_search,
        predicted=predicted,
    )
    metrics = dict(at.metrics)
    metrics[capacity_metric(found.over)] = math.nan if capacity is None else capacity
    return at.model_copy(
        update={
            "workload": workload,
            "metrics": metrics,
            "repeats": [],
            "capacity": info,
            "requests": None,
            "telemetry": None,
            "prediction": None,
            "started_at": first,
            "finished_at": last or None,
            "path": None,
        }
    )
