"""What a suite author imports from ``pytest_pd``, and the marker helpers' early checks."""

from __future__ import annotations

import subprocess
import sys

import pytest

import pytest_pd
from pytest_pd import clusters, threshold
from pytest_pd.judge.thresholds import ThresholdError


def test_every_public_name_resolves():
    for name in pytest_pd.__all__:
        assert getattr(pytest_pd, name) is not None, name
    with pytest.raises(AttributeError):
        pytest_pd.NotAThing  # noqa: B018


def test_importing_the_package_loads_nothing_else():
    code = "import sys, pytest_pd; print(sorted(m for m in sys.modules if m.startswith('pytest_pd')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['pytest_pd']"


def test_threshold_is_the_marker_checked_at_once():
    mark = threshold("mean_ttft_ms", max_ratio=1.5)
    assert mark.name == "pd_threshold" and mark.args == ("mean_ttft_ms",)
    assert mark.kwargs == {"max_ratio": 1.5}
    with pytest.raises(ThresholdError, match="unknown metric 'mean_tftt_ms'"):
        threshold("mean_tftt_ms", max_ratio=1.5)
    with pytest.raises(ThresholdError, match="unknown argument"):
        threshold("mean_ttft_ms", max_ration=1.5)


def test_clusters_marker():
    assert clusters("cpu-*").args == ("cpu-*",)
    assert clusters(exclude="cpu-*").kwargs == {"exclude": ("cpu-*",)}
    with pytest.raises(TypeError):
        clusters()
