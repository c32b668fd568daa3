"""The fixtures a suite uses; each borrows the session object (``session.py``): ``pd_measurer``
(owns the clusters), ``pd_spec`` (the candidate's cluster file), ``pd_cluster`` (the candidate,
up), ``pd_workload`` (what to run; parametrize it), ``pd_run`` (candidate vs baseline,
judged) and ``pd_capacity`` (their capacity under SLOs, judged)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pytest_pd.cluster.spec import ClusterSpec
from pytest_pd.cluster.topology import Topology
from pytest_pd.judge.comparison import Comparison
from pytest_pd.measure import Measurer
from pytest_pd.session import PdSession, session_of
from pytest_pd.workload.spec import Workload


@pytest.fixture(scope="session")
def pd_session(pytestconfig: pytest.Config) -> PdSession:
    """This session's pytest-pd state: settings, measurer, what the report will show."""
    return session_of(pytestconfig)


@pytest.fixture(scope="session")
def pd_measurer(request: pytest.FixtureRequest, pd_session: PdSession) -> Iterator[Measurer]:
    """Brings clusters up one at a time and caches every (cluster, workload) record; tears the
    last one down at the end of the session (or keeps it: --pd-keep-cluster-on-failure)."""
    try:
        yield pd_session.measurer
    finally:
        pd_session.close(keep=request.session.testsfailed > 0)


@pytest.fixture(scope="session")
def pd_spec(pd_measurer: Measurer, pd_session: PdSession) -> ClusterSpec:
    """The candidate cluster's validated spec (``--cluster``)."""
    return pd_measurer.spec(pd_session.settings.cluster)


@pytest.fixture
def pd_cluster(pd_measurer: Measurer, pd_spec: ClusterSpec) -> Topology:
    """The candidate cluster, up and ready for this test (brought up again if a baseline
    measurement replaced it); ``.router_url`` is where to send requests."""
    return pd_measurer.up(pd_spec)


@pytest.fixture(scope="session")
def pd_workload() -> Workload:
    """The seed workload by default; parametrize ``pd_workload`` to run others."""
    return Workload()


@pytest.fixture
def pd_run(
    request: pytest.FixtureRequest,
    pd_session: PdSession,
    pd_measurer: Measurer,
    pd_spec: ClusterSpec,
    pd_workload: Workload,
) -> Comparison:
    """Runs ``pd_workload`` on the candidate and (when a ratio bound asks for it) gets its
    baseline (live, stored or from a file: ``--pd-baseline``), then judges every ``pd_threshold``
    marker and compares with the last run. The plugin fails the test on any failed verdict."""
    return pd_session.run(request.node, pd_spec, pd_workload)


@pytest.fixture
def pd_capacity(
    request: pytest.FixtureRequest,
    pd_session: PdSession,
    pd_measurer: Measurer,
    pd_spec: ClusterSpec,
    pd_workload: Workload,
) -> Comparison:
    """Searches the highest load at which ``pd_workload`` meets the SLOs of the test's
    ``pd_capacity`` marker, on the candidate and (when a ratio bound asks for it) on its baseline,
    each load measured on one bring-up; judged like ``pd_run``: ``.candidate.metrics`` holds
    ``capacity_<over>`` and the statistics at that load, ``.candidate.capacity`` every load."""
    return pd_session.capacity(request.node, pd_spec, pd_workload)
