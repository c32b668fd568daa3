"""Hooks a suite's ``conftest.py`` (or another plugin) may implement to extend pytest-pd.

Each is called with keyword arguments, as pytest calls its own hooks; implement only the
arguments you need::

    # conftest.py
    def pytest_pd_environment(config):
        return {"gpu_driver": "550.54.15", "nccl": "2.21.5"}

    def pytest_pd_record(config, record):
        record.extra["ticket"] = "PERF-1234"
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy
import pytest

if TYPE_CHECKING:
    from pytest_pd.cluster.spec import ClusterSpec
    from pytest_pd.cluster.topology import Topology
    from pytest_pd.judge.baseline import BaselinePlan
    from pytest_pd.judge.comparison import Comparison
    from pytest_pd.record import RunRecord
    from pytest_pd.workload.spec import Workload

hookspec = pluggy.HookspecMarker("pytest")


@hookspec
def pytest_pd_environment(config: pytest.Config) -> dict[str, Any] | None:
    """Extra environment facts for every run record of this session (driver versions, the
    image tag, a ticket): a dict of JSON-able values, merged into ``record.environment``.
    Called once, when the first cluster is needed."""


@hookspec
def pytest_pd_record(config: pytest.Config, record: RunRecord) -> None:
    """``record`` (a measured run, or one that failed) just before it is stored: change it in
    place, e.g. add to ``record.extra``. Called on the process that measured the run."""


@hookspec(firstresult=True)
def pytest_pd_baseline(
    config: pytest.Config, spec: ClusterSpec, workload: Workload, planned: BaselinePlan
) -> BaselinePlan | None:
    """Choose the baseline of ``workload`` on the candidate ``spec``: return a
    :class:`~pytest_pd.judge.baseline.BaselinePlan` (a cluster to measure live, or a stored run
    record) to use instead of ``planned`` (what ``--pd-baseline`` chose), or None to keep it.
    Only called for tests with a ratio bound."""


@hookspec
def pytest_pd_report_extras(config: pytest.Config, comparison: Comparison) -> str | None:
    """HTML to add to the report after ``comparison``'s charts (escape what you did not
    write yourself). Called where the report is written (the xdist controller)."""


@hookspec
def pytest_pd_cluster_up(config: pytest.Config, topology: Topology) -> None:
    """``topology`` is up and healthy (servers and router), before anything is measured on it:
    e.g. warm caches, record its configuration. Raising fails the bring-up."""


@hookspec
def pytest_pd_cluster_down(config: pytest.Config, topology: Topology) -> None:
    """``topology`` is about to be torn down (its servers still run): e.g. collect extra
    logs or profiles. Errors are reported but do not stop the teardown."""
