"""Change points of a series with Apache Otava (``otava.analysis.compute_change_points``: the
E-divisive means split over sliding windows, then the merge that keeps points significant by a
two-sided t-test and at least ``min_magnitude`` apart in mean), each with its size and a confidence
interval of the size (the pooled Student t interval of the difference of the means, relative
to the mean before). Pure."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_MAX_PVALUE = 0.001
DEFAULT_MIN_MAGNITUDE = 0.01
DEFAULT_WINDOW = 30


@dataclass(frozen=True)
class ChangePoint:
    index: int  # the first point after the change
    mean_before: float
    mean_after: float
    pvalue: float
    interval: tuple[float, float]  # 95 % interval of the relative change

    @property
    def change(self) -> float:
        """Relative change of the mean: +0.041 is 4.1 % higher after."""
        return self.mean_after / self.mean_before - 1.0 if self.mean_before else math.nan


def _interval(left: np.ndarray, right: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Interval of the relative change of the mean, from the same pooled-variance Student t
    that gives the change point its p-value."""
    from scipy import stats

    m1, m2 = float(left.mean()), float(right.mean())
    if m1 == 0:
        return math.nan, math.nan
    dof = left.size + right.size - 2
    if dof < 1:
        return m2 / m1 - 1.0, m2 / m1 - 1.0
    pooled = ((left.size - 1) * float(left.var(ddof=1) if left.size > 1 else 0.0)) + (
        (right.size - 1) * float(right.var(ddof=1) if right.size > 1 else 0.0)
    )
    se = math.sqrt(pooled / dof * (1 / left.size + 1 / right.size))
    half = float(stats.t.ppf(0.5 + level / 2, dof)) * se
    return (m2 - m1 - half) / m1, (m2 - m1 + half) / m1


def change_points(
    values: Sequence[float],
    *,
    max_pvalue: float = DEFAULT_MAX_PVALUE,
    min_magnitude: float = DEFAULT_MIN_MAGNITUDE,
    window: int = DEFAULT_WINDOW,
) -> list[ChangePoint]:
    """The significant change points of ``values`` (oldest first), oldest first."""
    series = np.asarray(values, dtype=float)
    if series.size < 3 or not np.all(np.isfinite(series)):
        return []
    from otava.analysis import compute_change_points  # with scipy.stats: ~70 MB, ~1 s, when needed

    # a list, not an array: otava slices a list to each window, an array it would read whole
    found, _weak = compute_change_points(
        series.tolist(), window_len=window, max_pvalue=max_pvalue, min_magnitude=min_magnitude
    )
    bounds = [0, *(cp.index for cp in found), series.size]
    out = []
    for n, cp in enumerate(found):
        left, right = series[bounds[n] : cp.index], series[cp.index : bounds[n + 2]]
        out.append(
            ChangePoint(
                index=int(cp.index),
                mean_before=float(cp.stats.mean_1),
                mean_after=float(cp.stats.mean_2),
                pvalue=float(cp.stats.pvalue),
                interval=_interval(left, right),
            )
        )
    return out
