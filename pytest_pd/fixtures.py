"""Session fixtures: ``pd_measurer`` (owns the clusters), ``pd_cluster`` (the candidate, up),
``pd_workload`` (what to run; parametrize it) and ``pd_run`` (candidate vs baseline, judged)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_pd.cluster.spec import ClusterSpec
from pytest_pd.cluster.topology import Topology
from pytest_pd.comparison import Comparison, Side, compare
from pytest_pd.measure import Measurement, Measurer, prefill_strategy
from pytest_pd.thresholds import Bound
from pytest_pd.workload.prompts import Workload

BOUNDS_KEY = pytest.StashKey[list[Bound]]()
COMPARISON_KEY = pytest.StashKey[Comparison]()
WORKLOADS_KEY = pytest.StashKey[list[Workload]]()
COMPARISONS_KEY = pytest.StashKey[list[Comparison]]()
MEASURER_KEY = pytest.StashKey[Measurer]()


def _path_option(config: pytest.Config, option: str, ini: str) -> Path:
    value = config.getoption(option) or config.getini(ini)
    path = Path(value)
    return path if path.is_absolute() else config.rootpath / path


def cluster_name(config: pytest.Config) -> str:
    return config.getoption("pd_cluster") or config.getini("pd_cluster")


def _say(config: pytest.Config):
    reporter = config.pluginmanager.get_plugin("terminalreporter")

    def say(text: str) -> None:
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(f"[pytest-pd] {text}")

    return say


@pytest.fixture(scope="session")
def pd_measurer(pytestconfig: pytest.Config) -> Iterator[Measurer]:
    """Brings clusters up one at a time and caches every (cluster, workload) measurement."""
    measurer = Measurer(
        cluster_dir=_path_option(pytestconfig, "pd_cluster_dir", "pd_cluster_dir"),
        run_base=_path_option(pytestconfig, "pd_run_dir", "pd_run_dir"),
        results_dir=_path_option(pytestconfig, "pd_results_dir", "pd_results_dir"),
        say=_say(pytestconfig),
        workdir=pytestconfig.rootpath,
    )
    pytestconfig.stash[MEASURER_KEY] = measurer
    try:
        yield measurer
    finally:
        measurer.close()


@pytest.fixture(scope="session")
def pd_spec(pd_measurer: Measurer, pytestconfig: pytest.Config) -> ClusterSpec:
    """The candidate cluster's validated spec (``--cluster``)."""
    return pd_measurer.spec(cluster_name(pytestconfig))


@pytest.fixture(scope="session")
def pd_cluster(pd_measurer: Measurer, pd_spec: ClusterSpec) -> Topology:
    """The candidate cluster, up and ready; ``.router_url`` is where to send requests."""
    return pd_measurer._up(pd_spec)


@pytest.fixture(scope="session")
def pd_workload() -> Workload:
    """The seed workload by default; parametrize ``pd_workload`` to run others."""
    return Workload()


def _side(m: Measurement) -> Side:
    spec = m.cluster
    speedup = float(spec.sim.get("speedup", 1.0)) if spec.engine == "sim" else 1.0
    return Side(spec.label, prefill_strategy(spec), m.summary.to_dict(),
                simulated=spec.engine == "sim", speedup=speedup,
                result_path=str(m.result_path) if m.result_path else None)


@pytest.fixture
def pd_run(request: pytest.FixtureRequest, pd_measurer: Measurer, pd_spec: ClusterSpec,
           pd_workload: Workload) -> Comparison:
    """Runs ``pd_workload`` on the candidate and (when a ratio bound asks for it) on its baseline,
    then judges every ``pd_threshold`` marker. The plugin fails the test on any failed verdict."""
    config = request.config
    bounds = request.node.stash.get(BOUNDS_KEY, [])
    planned = config.stash.get(WORKLOADS_KEY, [])
    candidate = pd_measurer.measure(pd_spec, pd_workload, also=planned)
    baseline = None
    if any(b.is_ratio for b in bounds):
        baseline = pd_measurer.measure(pd_measurer.baseline_of(pd_spec), pd_workload, also=planned)
    comp = compare(request.node.nodeid, pd_workload.id, _side(candidate),
                   _side(baseline) if baseline else None, bounds)
    request.node.stash[COMPARISON_KEY] = comp
    config.stash.setdefault(COMPARISONS_KEY, []).append(comp)
    return comp
