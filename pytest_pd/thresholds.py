"""Threshold markers -> verdicts. Pure: numbers in, verdicts out.

``@pytest.mark.pd_threshold("mean_ttft_ms", max_ratio=1.5)`` bounds the candidate relative to the
baseline measured on the same workload; ``max=`` / ``min=`` are absolute bounds (SLOs) on the
candidate alone. Several bounds may be given in one marker and markers stack.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from pytest_pd.errors import PdError

BOUND_KINDS = ("max_ratio", "min_ratio", "max", "min")


class ThresholdError(PdError):
    """A marker that cannot be evaluated as written."""


@dataclass(frozen=True)
class Bound:
    metric: str
    kind: str  # one of BOUND_KINDS
    value: float

    @property
    def is_ratio(self) -> bool:
        return self.kind.endswith("_ratio")

    def text(self) -> str:
        op = "≤" if self.kind.startswith("max") else "≥"
        return f"{op} {self.value:g}× baseline" if self.is_ratio else f"{op} {self.value:g}"


@dataclass(frozen=True)
class Verdict:
    bound: Bound
    candidate: float
    baseline: float | None
    passed: bool
    message: str

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.candidate / self.baseline


def bounds_from_marker(args: tuple, kwargs: Mapping[str, object],
                       known_metrics: set[str]) -> list[Bound]:
    """Validate one ``pd_threshold`` marker's arguments and return its bounds."""
    if len(args) != 1 or not isinstance(args[0], str):
        raise ThresholdError(
            f"pd_threshold takes one metric name then bounds, e.g. "
            f"pd_threshold('mean_ttft_ms', max_ratio=1.5); got args {args!r}"
        )
    metric = args[0]
    if metric not in known_metrics:
        raise ThresholdError(
            f"pd_threshold: unknown metric {metric!r}; known metrics: {', '.join(sorted(known_metrics))}"
        )
    unknown = set(kwargs) - set(BOUND_KINDS)
    if unknown:
        raise ThresholdError(
            f"pd_threshold({metric!r}): unknown argument(s) {', '.join(sorted(unknown))}; "
            f"allowed: {', '.join(BOUND_KINDS)}"
        )
    bounds = []
    for kind in BOUND_KINDS:
        if kind in kwargs:
            value = kwargs[kind]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ThresholdError(f"pd_threshold({metric!r}, {kind}=...) needs a finite number, "
                                     f"got {value!r}")
            if kind.endswith("_ratio") and value <= 0:
                raise ThresholdError(f"pd_threshold({metric!r}, {kind}={value}) must be > 0")
            bounds.append(Bound(metric, kind, float(value)))
    if not bounds:
        raise ThresholdError(
            f"pd_threshold({metric!r}) names no bound; give max_ratio=, min_ratio=, max= or min="
        )
    return bounds


def evaluate(bound: Bound, candidate: Mapping[str, float],
             baseline: Mapping[str, float] | None) -> Verdict:
    """One bound against the candidate's (and, for ratios, the baseline's) numbers."""
    value = float(candidate[bound.metric])
    if not bound.is_ratio:
        limit = bound.value
        ok = value <= limit if bound.kind == "max" else value >= limit
        base = None if baseline is None else float(baseline[bound.metric])
        msg = (f"{bound.metric} = {value:.4g} {'within' if ok else 'violates'} bound "
               f"{bound.text()}")
        return Verdict(bound, value, base, ok and math.isfinite(value), msg)
    if baseline is None:
        raise ThresholdError(f"{bound.metric}: a ratio bound needs a baseline measurement")
    base = float(baseline[bound.metric])
    if not (math.isfinite(value) and math.isfinite(base)) or base == 0:
        return Verdict(bound, value, base, False,
                       f"{bound.metric}: cannot form a ratio (candidate {value:.4g}, baseline {base:.4g})")
    ratio = value / base
    ok = ratio <= bound.value if bound.kind == "max_ratio" else ratio >= bound.value
    msg = (f"{bound.metric}: candidate {value:.4g} vs baseline {base:.4g} = {ratio:.3f}× "
           f"({delta_percent(value, base):+.1f} %), bound {bound.text()} → "
           f"{'pass' if ok else 'FAIL'}")
    return Verdict(bound, value, base, ok, msg)


def delta_percent(candidate: float, baseline: float) -> float:
    if baseline == 0 or not (math.isfinite(candidate) and math.isfinite(baseline)):
        return math.nan
    return (candidate - baseline) / baseline * 100.0
