"""pytest hooks only: options, ini keys, markers, the session object, fixture wiring, verdicts."""

from __future__ import annotations

import fnmatch
import warnings
from collections.abc import Generator
from pathlib import Path

import pytest

from pytest_pd import hookspec, options
from pytest_pd.catalog import judgeable
from pytest_pd.cluster.signals import sigterm_as_interrupt
from pytest_pd.errors import PdRegressionWarning
from pytest_pd.fixtures import (  # noqa: F401  (fixtures are found in the plugin's namespace)
    pd_capacity,
    pd_cluster,
    pd_measurer,
    pd_run,
    pd_session,
    pd_spec,
    pd_workload,
)
from pytest_pd.history.verdict import MARKER as HISTORY_MARKER
from pytest_pd.history.verdict import MARKER_HELP as HISTORY_HELP
from pytest_pd.history.verdict import marker_settings
from pytest_pd.judge.capacity import MARKER as CAPACITY_MARKER
from pytest_pd.judge.capacity import capacity_spec
from pytest_pd.judge.thresholds import ThresholdError, bounds_from_marker
from pytest_pd.record import capacity_metric
from pytest_pd.report.collector import ReportCollector
from pytest_pd.session import (
    BOUNDS_KEY,
    CAPACITY_KEY,
    COMPARISON_KEY,
    HISTORY_KEY,
    PREDICTION_KEY,
    SESSION_KEY,
    PdSession,
    session_of,
)
from pytest_pd.twin.predict import MARKER as PREDICTION_MARKER
from pytest_pd.twin.predict import prediction_bound
from pytest_pd.workload.spec import Workload

MISUSE_KEY = pytest.StashKey[str]()
PD_FIXTURES = {"pd_run", "pd_capacity", "pd_cluster", "pd_spec", "pd_measurer"}
MARKER = "pd_threshold"
MARKER_HELP = (
    "pd_threshold(metric, max_ratio=, min_ratio=, max=, min=, noise='fail'|'pass'|'xfail'): bound "
    "a metric of the candidate cluster relative to its baseline (ratios) or absolutely; stackable"
)
PREDICTION_HELP = (
    "pd_prediction(max_error=0.1, stats=('mean_ttft_ms', 'mean_tpot_ms', 'output_throughput')): fail "
    "when the cluster's twin profile (twin: {profile: FILE}) mispredicts a statistic of the run by more"
)
CAPACITY_HELP = (
    "pd_capacity(slo={'p90_ttft_ms': 2000, 'p90_tpot_ms': 50}, over='concurrency'|'request_rate', "
    "start=1, growth=2, max_points=8, resolution=0.1, min_ratio=None, loads=()): search the highest "
    "load at which the run meets the SLOs with no failed request, or measure exactly loads=[...] "
    "(a sweep); use the pd_capacity fixture; min_ratio bounds it against the baseline's"
)
CLUSTERS_MARKER = "pd_clusters"
CLUSTERS_HELP = (
    "pd_clusters(*patterns, exclude=()): run this test (or this pytest.param) only on clusters whose "
    "name matches one of the shell-style patterns and none of exclude; skipped elsewhere"
)


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    options.add_options(parser)
    pluginmanager.add_hookspecs(hookspec)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    config.addinivalue_line("markers", CLUSTERS_HELP)
    config.addinivalue_line("markers", PREDICTION_HELP)
    config.addinivalue_line("markers", CAPACITY_HELP)
    config.addinivalue_line("markers", HISTORY_HELP)
    session = PdSession(config, options.settings(config))  # bad option values fail here, first
    config.stash[SESSION_KEY] = session
    config.pluginmanager.register(session, "pytest-pd-session")
    config.pluginmanager.register(ReportCollector(session), "pytest-pd-report")
    # pytest-xdist: every test that needs a cluster carries xdist_group("pd-<cluster>"); with
    # --dist loadgroup they all run on one worker, so the cluster comes up once and measurements
    # never overlap. Plain -n N means --dist load, which ignores groups: upgrade it.
    if getattr(config.option, "dist", None) == "load" and not hasattr(config, "workerinput"):
        config.option.dist = "loadgroup"
    # `pytest suites/ --cluster=X` writes report.html unless told otherwise (before pytest-html
    # reads the option in its own pytest_configure).
    if (
        config.getoption("pd_cluster")
        and hasattr(config.option, "htmlpath")
        and not config.option.collectonly
    ):
        if not config.option.htmlpath:
            config.option.htmlpath = "report.html"
            config.option.self_contained_html = True


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Generator[None, object, object]:
    with sigterm_as_interrupt():  # a CI cancel (SIGTERM) still tears clusters down
        return (yield)


@pytest.hookimpl(trylast=True)  # after -k/-m deselection: only selected tests plan workloads
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    known = judgeable()
    cluster = session_of(config).settings.cluster
    workloads: dict[str, Workload] = {}
    label = Path(cluster).stem if cluster.endswith((".yaml", ".yml")) else cluster
    for item in items:
        not_here = wrong_cluster(item, label)
        if not_here:
            item.add_marker(pytest.mark.skip(reason=not_here))
            continue
        markers = list(item.iter_markers(MARKER))
        prediction = item.get_closest_marker(PREDICTION_MARKER)
        capacity = item.get_closest_marker(CAPACITY_MARKER)
        fixtures = set(getattr(item, "fixturenames", ()))
        uses_run = bool(fixtures & {"pd_run", "pd_capacity"})
        uses_pd = bool(fixtures & PD_FIXTURES)
        misuse = None
        if (markers or prediction) and not uses_run:
            name = MARKER if markers else PREDICTION_MARKER
            misuse = f"{name} markers need the pd_run fixture: add `pd_run` to the test's arguments"
        elif capacity is not None and prediction is not None:
            misuse = (
                f"{PREDICTION_MARKER} judges one run's prediction; a {CAPACITY_MARKER} test runs a "
                "search of many (the terminal says the model's capacity): use it on a pd_run test"
            )
        elif (capacity is not None) != ("pd_capacity" in fixtures):
            misuse = (
                f"the pd_capacity fixture and the {CAPACITY_MARKER}(slo=…) marker go together: "
                "the marker says what to search, the fixture runs the search"
            )
        if misuse is not None:
            item.stash[MISUSE_KEY] = misuse
            continue
        history = item.get_closest_marker(HISTORY_MARKER)
        if history is not None:
            try:
                base = session_of(config).settings.history
                item.stash[HISTORY_KEY] = marker_settings(base, history.args, history.kwargs)
            except (ValueError, TypeError) as exc:
                item.stash[MISUSE_KEY] = str(exc)
        if prediction is not None:
            try:
                item.stash[PREDICTION_KEY] = prediction_bound(prediction.args, prediction.kwargs)
            except ThresholdError as exc:
                item.stash[MISUSE_KEY] = str(exc)
        if uses_pd:
            item.add_marker(pytest.mark.xdist_group(name=f"pd-{cluster}"))
        if not uses_run:
            continue
        bounds = []
        try:
            for marker in reversed(markers):  # decorator order, top first
                bounds += bounds_from_marker(marker.args, marker.kwargs, known)
            if capacity is not None:
                wanted = capacity_spec(capacity.args, capacity.kwargs)
                item.stash[CAPACITY_KEY] = wanted
                if wanted.min_ratio is not None:
                    ratio = {"min_ratio": wanted.min_ratio}
                    bounds += bounds_from_marker((capacity_metric(wanted.over),), ratio, known)
        except (ThresholdError, ValueError) as exc:
            item.stash[MISUSE_KEY] = str(exc)
        item.stash[BOUNDS_KEY] = bounds
        callspec = getattr(item, "callspec", None)
        workload = callspec.params.get("pd_workload") if callspec else None
        if isinstance(workload, Workload) and capacity is None:  # a search runs its own loads
            workloads.setdefault(workload.id, workload)
    session_of(config).planned = list(workloads.values())


def wrong_cluster(item: pytest.Item, cluster: str) -> str | None:
    """Why ``item`` does not run on ``cluster`` (its ``pd_clusters`` markers), or None."""
    for marker in item.iter_markers(CLUSTERS_MARKER):
        exclude = marker.kwargs.get("exclude", ())
        exclude = (exclude,) if isinstance(exclude, str) else tuple(exclude)
        if marker.args and not any(fnmatch.fnmatchcase(cluster, p) for p in marker.args):
            return f"for clusters {', '.join(marker.args)}; this session runs {cluster}"
        if any(fnmatch.fnmatchcase(cluster, p) for p in exclude):
            return f"not for clusters {', '.join(exclude)}; this session runs {cluster}"
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    misuse = item.stash.get(MISUSE_KEY, None)
    if misuse is not None:
        pytest.fail(misuse, pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    result = yield
    comp = item.stash.get(COMPARISON_KEY, None)
    if comp is not None:
        for text in comp.warnings():
            warnings.warn(PdRegressionWarning(f"{comp.workload_id}: {text}"), stacklevel=1)
        if comp.xfail_reason:
            pytest.xfail(comp.xfail_reason)
        if not comp.passed:
            pytest.fail(comp.failure_message(), pytrace=False)
    return result


def pytest_report_header(config: pytest.Config) -> str | None:
    if config.getoption("pd_cluster") is None:
        return None
    return f"pytest-pd: cluster {session_of(config).settings.cluster}"
