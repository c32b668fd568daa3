"""Capacity under an SLO: the highest load (concurrency or request rate) at which a run meets
every SLO with no failed request, found by measuring as few loads as possible — grow the load
geometrically until a point misses (bracketing), then bisect between the last pass and the first
miss until the bracket is narrow enough or the point budget is spent. Pure: the caller's
``evaluate`` measures (a real cluster) or simulates (the timing model) one load."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .slo import slo_misses

LOADS = ("concurrency", "request_rate")


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
            if nxt <= lo:
                break  # at the ceiling we were given
        elif hi is not None and lo is None:
            nxt = snap(hi / growth)
            if nxt >= hi:
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
