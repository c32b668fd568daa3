"""Service-level objectives: bounds on a run's statistics (latencies from above, throughputs from
below, as the metric catalog says), parsed from ``NAME=BOUND,…`` text and checked. Pure."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping

from pytest_pd.catalog import higher_is_better
from pytest_pd.errors import PdError


class SloError(PdError, ValueError):
    """SLO text or a mapping that names an unknown statistic or a bound that is not a number."""


def canonical(name: str) -> str:
    """``ttft_p90_ms`` -> ``p90_ttft_ms`` (the order users often write), else unchanged."""
    parts = name.strip().split("_")
    if len(parts) == 3 and parts[1] in ("mean", "median", "p90", "p95", "p99"):
        return f"{parts[1]}_{parts[0]}_{parts[2]}"
    return name.strip()


def check_slos(slos: Mapping[str, object], known: Collection[str]) -> dict[str, float]:
    """``slos`` with canonical names and float bounds; SloError for an unknown name or a bound
    that is not a number."""
    out: dict[str, float] = {}
    for name, bound in slos.items():
        key = canonical(str(name))
        if key not in known:
            raise SloError(f"SLO {name!r}: unknown statistic; known: {', '.join(sorted(known))}")
        if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not math.isfinite(bound):
            raise SloError(f"SLO {name!r}: the bound must be a finite number, got {bound!r}")
        out[key] = float(bound)
    return out


def parse_slos(text: str, known: Collection[str]) -> dict[str, float]:
    """``"p90_ttft_ms=6000,ttft_p90_ms=…"`` -> {statistic: bound}."""
    pairs: dict[str, object] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep:
            raise SloError(f"SLO {item!r}: give NAME=VALUE, NAME one of {', '.join(sorted(known))}")
        try:
            pairs[name] = float(value)
        except ValueError:
            raise SloError(f"SLO {item!r}: {value.strip()!r} is not a number") from None
    return check_slos(pairs, known)


def slo_misses(stats: Mapping[str, float], slos: Mapping[str, float]) -> list[str]:
    """Each SLO the statistics miss, e.g. ``p90_ttft_ms 8428 > 6000``; a missing or NaN
    statistic misses."""
    misses = []
    for name, bound in slos.items():
        value = stats.get(name, math.nan)
        higher = higher_is_better(name) or name.endswith("_per_gpu")
        ok = value >= bound if higher else value <= bound
        if not ok:
            misses.append(f"{name} {value:.4g} {'<' if higher else '>'} {bound:g}")
    return misses
