"""Marker helpers for suite authors: the same markers as ``pytest.mark.pd_threshold`` and
``pytest.mark.pd_clusters``, checked when the suite is imported (a misspelt metric or bound fails
at once, naming it, instead of at collection)."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_pd.catalog import judgeable
from pytest_pd.judge.thresholds import bounds_from_marker


def threshold(metric: str, **bounds: Any) -> pytest.MarkDecorator:
    """``@threshold("mean_ttft_ms", max_ratio=1.5)``: bound a metric of the candidate relative to
    its baseline (``max_ratio``/``min_ratio``) or absolutely (``max``/``min``); ``noise=`` says
    how a verdict within noise counts ("fail", "pass", "xfail")."""
    bounds_from_marker((metric,), bounds, judgeable())
    return pytest.mark.pd_threshold(metric, **bounds)


def clusters(*patterns: str, exclude: str | tuple[str, ...] | list[str] = ()) -> pytest.MarkDecorator:
    """``@clusters("cpu-*")``, ``@clusters(exclude="cpu-*")``: run only on clusters whose name
    matches one of the shell-style patterns (any, when none is given) and none of ``exclude``."""
    excluded = (exclude,) if isinstance(exclude, str) else tuple(exclude)
    if not (patterns or excluded) or not all(isinstance(p, str) for p in (*patterns, *excluded)):
        raise TypeError(
            "clusters() takes shell-style name patterns (strings), e.g. "
            "clusters('sim-*') or clusters(exclude='cpu-*')"
        )
    return pytest.mark.pd_clusters(*patterns, exclude=excluded)
