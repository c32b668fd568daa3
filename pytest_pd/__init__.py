"""pytest-pd: acceptance suites for prefill/decode-disaggregated LLM serving clusters.

What a suite author imports::

    from pytest_pd import Workload, threshold, clusters

Names are loaded on first use, so importing a part of the package (the simulator runs as
``python -m pytest_pd.sim``) does not load the rest.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    # what to run
    "Workload": "pytest_pd.workload.spec",
    # markers, checked when the suite is imported
    "threshold": "pytest_pd.markers",
    "clusters": "pytest_pd.markers",
    # results
    "RunRecord": "pytest_pd.record",
    "Failure": "pytest_pd.record",
    "RunSummary": "pytest_pd.workload.metrics",
    "Comparison": "pytest_pd.judge.comparison",
    "Bound": "pytest_pd.judge.thresholds",
    "Verdict": "pytest_pd.judge.thresholds",
    "Metric": "pytest_pd.catalog",
    "CATALOG": "pytest_pd.catalog",
    "BaselinePlan": "pytest_pd.judge.baseline",  # what a pytest_pd_baseline hook returns
    # errors and warnings
    "PdError": "pytest_pd.errors",
    "ClusterFileError": "pytest_pd.errors",
    "HostError": "pytest_pd.errors",
    "BringUpError": "pytest_pd.errors",
    "BaselineError": "pytest_pd.errors",
    "PdRegressionWarning": "pytest_pd.errors",
    "PdStoreWarning": "pytest_pd.errors",
    "WorkloadError": "pytest_pd.workload.spec",
    "ThresholdError": "pytest_pd.judge.thresholds",
}
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_pd' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
