"""A workload at another load: the points of a sweep or of a capacity search. Pure."""

from __future__ import annotations

import dataclasses
import math

from .spec import Workload, WorkloadError

REQUESTS_PER_SLOT = 2
"""A concurrency point sends at least this many requests per slot: every slot turns over at
least once, so the run is not just the first burst."""


def at_load(base: Workload, over: str, load: float) -> Workload:
    """``base`` with its concurrency (whole requests, at least ``REQUESTS_PER_SLOT`` x that many
    requests) or its request rate set to ``load``: open loop, the same number of requests and no
    client-side cap (a capped client would queue requests where TTFT does not see it)."""
    if over == "concurrency":
        c = max(1, int(round(load)))
        return dataclasses.replace(
            base, concurrency=c, num_requests=max(base.num_requests, REQUESTS_PER_SLOT * c)
        )
    if over == "request_rate":
        if not load > 0 or math.isinf(load):
            raise WorkloadError(f"a request-rate point must be a finite rate > 0, got {load!r}")
        return dataclasses.replace(base, request_rate=float(load), concurrency=base.num_requests)
    raise WorkloadError(f"a sweep varies concurrency or request_rate, not {over!r}")


def geometric(low: float, high: float, points: int) -> list[float]:
    """``points`` loads from ``low`` to ``high`` spaced by a constant factor."""
    if points < 2 or not 0 < low < high:
        raise WorkloadError(
            f"a geometric range needs 0 < low < high and 2+ points, got {low}, {high}, {points}"
        )
    ratio = (high / low) ** (1 / (points - 1))
    return [low * ratio**i for i in range(points)]
