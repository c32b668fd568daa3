"""Run-to-run noise: bootstrap confidence intervals over repeats. Pure (numpy, seeded)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

DEFAULT_RESAMPLES = 2000
DEFAULT_LEVEL = 0.95


def _clean(values: Sequence[float] | None) -> npt.NDArray[Any]:
    arr = np.asarray([] if values is None else list(values), dtype=float)
    finite: npt.NDArray[Any] = arr[np.isfinite(arr)]
    return finite


def bootstrap_ci(
    candidate: Sequence[float],
    baseline: Sequence[float] | None = None,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the median of ``candidate`` (or, with ``baseline``, of
    median(candidate) / median(baseline), each side resampled independently).

    None when there is nothing to resample: fewer than two values on every side (one repeat has
    no spread to estimate). A side with one value is held fixed.
    """
    cand = _clean(candidate)
    base = _clean(baseline) if baseline is not None else None
    if cand.size == 0 or (base is not None and base.size == 0):
        return None
    if cand.size < 2 and (base is None or base.size < 2):
        return None
    rng = np.random.default_rng(seed)

    def medians(values: npt.NDArray[Any]) -> npt.NDArray[Any]:
        if values.size < 2:
            return np.full(resamples, float(values[0]))
        idx = rng.integers(0, values.size, size=(resamples, values.size))
        out: npt.NDArray[Any] = np.median(values[idx], axis=1)
        return out

    stat = medians(cand)
    if base is not None:
        denom = medians(base)
        with np.errstate(divide="ignore", invalid="ignore"):
            stat = stat / denom
        stat = stat[np.isfinite(stat)]
        if stat.size == 0:
            return None
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(stat, [tail, 100.0 - tail])
    return float(lo), float(hi)
