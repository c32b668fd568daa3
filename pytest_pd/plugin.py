"""pytest hooks only: options, ini keys, markers, fixture wiring, verdicts and report hooks."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_pd.cluster.topology import sigterm_as_interrupt
from pytest_pd.errors import PdError
from pytest_pd.fixtures import (  # noqa: F401  (fixtures are found in the plugin's namespace)
    BOUNDS_KEY,
    COMPARISON_KEY,
    COMPARISONS_KEY,
    WORKLOADS_KEY,
    cluster_name,
    pd_cluster,
    pd_measurer,
    pd_run,
    pd_spec,
    pd_workload,
)
from pytest_pd.report import html as html_report
from pytest_pd.report import summary as text_report
from pytest_pd.thresholds import ThresholdError, bounds_from_marker
from pytest_pd.workload.metrics import RunSummary
from pytest_pd.workload.prompts import Workload

MISUSE_KEY = pytest.StashKey[str]()
MARKER = "pd_threshold"
MARKER_HELP = (
    "pd_threshold(metric, max_ratio=, min_ratio=, max=, min=): bound a metric of the candidate "
    "cluster relative to its baseline (ratios) or absolutely; stackable"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pytest-pd", "PD-disaggregated serving acceptance (pytest-pd)")
    group.addoption("--cluster", dest="pd_cluster", metavar="NAME",
                    help="cluster to test: file stem in --cluster-dir or a path (default: ini "
                         "pd_cluster, else sim-pp2)")
    group.addoption("--cluster-dir", dest="pd_cluster_dir", metavar="DIR",
                    help="folder of cluster YAML files (default: ini pd_cluster_dir, else clusters/)")
    group.addoption("--pd-run-dir", dest="pd_run_dir", metavar="DIR",
                    help="where server logs and pid files go, one folder per bring-up (default: runs/)")
    group.addoption("--pd-results-dir", dest="pd_results_dir", metavar="DIR",
                    help="results store, one JSON per measured run (default: results/)")
    parser.addini("pd_cluster", "default cluster name", default="sim-pp2")
    parser.addini("pd_cluster_dir", "folder of cluster files, relative to rootdir", default="clusters")
    parser.addini("pd_run_dir", "folder for run logs, relative to rootdir", default="runs")
    parser.addini("pd_results_dir", "results store, relative to rootdir", default="results")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    # `pytest suites/ --cluster=X` writes report.html unless told otherwise (before pytest-html
    # reads the option in its own pytest_configure).
    if config.getoption("pd_cluster") and hasattr(config.option, "htmlpath"):
        if not config.option.htmlpath:
            config.option.htmlpath = "report.html"
            config.option.self_contained_html = True


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Iterator[object]:
    with sigterm_as_interrupt():  # a CI cancel (SIGTERM) still tears clusters down
        return (yield)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    known = set(RunSummary.__dataclass_fields__)
    workloads: dict[str, Workload] = {}
    for item in items:
        markers = list(item.iter_markers(MARKER))
        uses_run = "pd_run" in getattr(item, "fixturenames", ())
        if markers and not uses_run:
            item.stash[MISUSE_KEY] = (
                f"{MARKER} markers need the pd_run fixture: add `pd_run` to the test's arguments")
            continue
        if not uses_run:
            continue
        bounds = []
        try:
            for marker in reversed(markers):  # decorator order, top first
                bounds += bounds_from_marker(marker.args, marker.kwargs, known)
        except ThresholdError as exc:
            item.stash[MISUSE_KEY] = str(exc)
        item.stash[BOUNDS_KEY] = bounds
        callspec = getattr(item, "callspec", None)
        workload = callspec.params.get("pd_workload") if callspec else None
        if isinstance(workload, Workload):
            workloads.setdefault(workload.id, workload)
    config.stash[WORKLOADS_KEY] = list(workloads.values())


def pytest_runtest_setup(item: pytest.Item) -> None:
    misuse = item.stash.get(MISUSE_KEY, None)
    if misuse is not None:
        pytest.fail(misuse, pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[object]:
    result = yield
    comp = item.stash.get(COMPARISON_KEY, None)
    if comp is not None and not comp.passed:
        pytest.fail(comp.failure_message(), pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef, request: pytest.FixtureRequest):
    """A user error in a pd fixture (bad cluster file, bring-up failure) is reported as its
    one-paragraph message, not as a traceback through our internals."""
    try:
        return (yield)
    except PdError as exc:
        if fixturedef.argname.startswith("pd_"):
            pytest.fail(f"{type(exc).__name__}: {exc}", pytrace=False)
        raise


def pytest_report_header(config: pytest.Config) -> str | None:
    if config.getoption("pd_cluster") is None:
        return None
    return f"pytest-pd: cluster {cluster_name(config)}"


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    comps = config.stash.get(COMPARISONS_KEY, [])
    if not comps:
        return
    terminalreporter.section("pytest-pd: candidate vs baseline")
    for comp in comps:
        for line in text_report.terminal_lines(comp):
            terminalreporter.write_line(line)
        terminalreporter.write_line("")
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with Path(step_summary).open("a", encoding="utf-8") as fh:
            fh.write(text_report.markdown(comps) + "\n")


@pytest.hookimpl(optionalhook=True)
def pytest_html_results_summary(prefix: list, summary: list, postfix: list, session) -> None:
    comps = session.config.stash.get(COMPARISONS_KEY, [])
    if comps:
        prefix.append(html_report.summary_section(comps))
