"""pytest hooks only: options, ini keys, markers, fixture wiring, verdicts and report hooks."""

from __future__ import annotations

import fnmatch
import os
import time
import warnings
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from pytest_pd import options
from pytest_pd.cluster.signals import sigterm_as_interrupt
from pytest_pd.errors import PdError, PdRegressionWarning
from pytest_pd.fixtures import (  # noqa: F401  (fixtures are found in the plugin's namespace)
    BOUNDS_KEY,
    COMPARISON_KEY,
    EVIDENCE_KEY,
    MEASURER_KEY,
    SETTINGS_KEY,
    WORKLOADS_KEY,
    Evidence,
    cluster_name,
    log_tails,
    pd_cluster,
    pd_measurer,
    pd_run,
    pd_spec,
    pd_workload,
)
from pytest_pd.judge import comparison
from pytest_pd.judge.catalog import judgeable
from pytest_pd.judge.thresholds import ThresholdError, bounds_from_marker
from pytest_pd.report import html as html_report
from pytest_pd.report import summary as text_report
from pytest_pd.workload.spec import Workload

MISUSE_KEY = pytest.StashKey[str]()
PD_FIXTURES = {"pd_run", "pd_cluster", "pd_spec", "pd_measurer"}
MARKER = "pd_threshold"
MARKER_HELP = (
    "pd_threshold(metric, max_ratio=, min_ratio=, max=, min=, noise='fail'|'pass'|'xfail'): bound "
    "a metric of the candidate cluster relative to its baseline (ratios) or absolutely; stackable"
)
CLUSTERS_MARKER = "pd_clusters"
CLUSTERS_HELP = (
    "pd_clusters(*patterns, exclude=()): run this test (or this pytest.param) only on clusters whose "
    "name matches one of the shell-style patterns and none of exclude; skipped elsewhere"
)
# Attributes of the call report (they travel from xdist workers to the controller with it).
REPORT_COMPARISON = "pd_comparison"
REPORT_HEADER = "pd_header"
REPORT_DETAILS = "pd_details"
REPORT_CLUSTERS = "pd_clusters"
REPORT_FAILURE = "pd_failure"
SHOWN_FAILURES_KEY = pytest.StashKey[set[tuple[Any, Any]]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    options.add_options(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    config.addinivalue_line("markers", CLUSTERS_HELP)
    config.stash[SETTINGS_KEY] = options.settings(config)  # bad option values fail here, first
    config.pluginmanager.register(Summaries(), "pytest-pd-summaries")
    config.pluginmanager.register(InterruptWatch(config), "pytest-pd-interrupts")
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
    cluster = cluster_name(config)
    workloads: dict[str, Workload] = {}
    label = Path(cluster).stem if cluster.endswith((".yaml", ".yml")) else cluster
    for item in items:
        not_here = wrong_cluster(item, label)
        if not_here:
            item.add_marker(pytest.mark.skip(reason=not_here))
            continue
        markers = list(item.iter_markers(MARKER))
        fixtures = set(getattr(item, "fixturenames", ()))
        uses_run = "pd_run" in fixtures
        uses_pd = bool(fixtures & PD_FIXTURES)
        if markers and not uses_run:
            item.stash[MISUSE_KEY] = (
                f"{MARKER} markers need the pd_run fixture: add `pd_run` to the test's arguments"
            )
            continue
        if uses_pd:
            item.add_marker(pytest.mark.xdist_group(name=f"pd-{cluster}"))
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


def _header(comp: comparison.Comparison, evidence: Evidence) -> dict[str, Any]:
    cand = evidence.candidate
    env = cand.get("environment") or {}
    side = comp.candidate
    hardware = (
        f"simulated (sim workers ×{side.speedup:g} faster than real time, behind the real "
        "sglang-router; numbers scaled back to real time)"
        if side.simulated
        else "real hardware"
    )
    baseline = "none"
    if comp.baseline is not None:
        baseline = f"{comp.baseline.cluster}: {evidence.baseline_source}"
    started = cand.get("started_at")
    return {
        "cluster": f"{side.cluster} ({(cand.get('cluster') or {}).get('file', '')})",
        "baseline": baseline,
        "model": side.model or (cand.get("model") or {}).get("name"),
        "versions": {
            "pytest-pd": env.get("pytest_pd"),
            "Python": env.get("python"),
            "sglang-router (harness)": env.get("sglang_router"),
            "SGLang (/get_server_info)": ", ".join(
                sorted({str(v) for v in (env.get("sglang") or {}).values()})
            )
            or None,
        },
        "commit": env.get("git_commit") or "unknown",
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)) if started else None,
        "hardware": hardware,
        "host": env.get("harness_host"),
    }


def failure_key(failure: dict[str, Any]) -> tuple[Any, Any]:
    """One failed bring-up or run, however many test reports carry it."""
    return failure.get("cluster"), failure.get("at")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Attach the comparison, the report header, the rendered details (charts, telemetry, log
    tails of failures) and the cluster files to the call report: they reach the controller under
    xdist, where the summaries are built from reports only."""
    report = yield
    if call.excinfo is not None and call.excinfo.errisinstance(PdError):
        # a user error (bad cluster file, failed bring-up, lost process): its one-paragraph
        # message, not a traceback through our internals (also when pytest re-raises the cached
        # error of a session fixture for a later test)
        exc = call.excinfo.value
        failure = getattr(exc, "failure", None)
        report.longrepr = f"{type(exc).__name__}: {exc}"
        shown = item.config.stash.setdefault(SHOWN_FAILURES_KEY, set())
        if failure is not None and report.when == "setup" and failure_key(failure) not in shown:
            shown.add(failure_key(failure))  # its logs appear once in the report, not once per later test
            setattr(report, REPORT_FAILURE, failure)
            report.extras = [
                *getattr(report, "extras", []),
                {
                    "name": "pytest-pd failure",
                    "format_type": "html",
                    "extension": "html",
                    "content": html_report.STYLE + html_report.failure_section([failure]),
                },
            ]
    comp = item.stash.get(COMPARISON_KEY, None)
    if comp is None or report.when != "call":
        return report
    setattr(report, REPORT_COMPARISON, comparison.to_dict(comp))
    report.user_properties += [
        ("pd_workload", comp.workload_id),
        ("pd_outcome", text_report.outcome_word(comp)),
        ("pd_result", comp.candidate.result_path or ""),
    ]
    evidence = item.stash.get(EVIDENCE_KEY, None)
    if evidence is not None:
        tails = log_tails(item.config, evidence) if report.failed else {}
        setattr(report, REPORT_HEADER, _header(comp, evidence))
        setattr(
            report,
            REPORT_DETAILS,
            html_report.details_section(comp, evidence.candidate, evidence.baseline, evidence.trend, tails),
        )
        views = [evidence.candidate] + ([evidence.baseline] if evidence.baseline else [])
        setattr(report, REPORT_CLUSTERS, html_report.cluster_files(views))
    extras = getattr(report, "extras", [])
    extras.append(
        {
            "name": "pytest-pd",
            "format_type": "html",
            "extension": "html",
            "content": html_report.STYLE + html_report.comparison_table(comp),
        }
    )
    report.extras = extras
    return report


def pytest_report_header(config: pytest.Config) -> str | None:
    if config.getoption("pd_cluster") is None:
        return None
    return f"pytest-pd: cluster {cluster_name(config)}"


class InterruptWatch:
    """Ctrl-C or SIGTERM: tear clusters down at session end even with
    --pd-keep-cluster-on-failure (pytest calls this before it finalizes session fixtures)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo) -> None:
        measurer = self.config.stash.get(MEASURER_KEY, None)
        if measurer is not None:
            measurer.keep_on_failure = False


class Summaries:
    """Collects the comparisons from test reports (local or from xdist workers) and writes the
    terminal summary, the GitHub step summary and the HTML report's table."""

    def __init__(self) -> None:
        self.comparisons: list[comparison.Comparison] = []
        self.header: dict[str, Any] | None = None
        self.details: list[str] = []
        self.clusters: dict[str, dict[str, str]] = {}
        self._failures: dict[tuple[Any, ...], dict[str, Any]] = {}

    def _note_failure(self, failure: dict[str, Any]) -> None:
        self._failures.setdefault(failure_key(failure), failure)

    def failures(self, config: pytest.Config) -> list[dict[str, Any]]:
        """Failed bring-ups and runs: from test reports (xdist workers too) and, in this process,
        from the measurer (an interrupted run has no test report)."""
        measurer = config.stash.get(MEASURER_KEY, None)
        for failure in measurer.failures if measurer is not None else ():
            self._note_failure(failure)
        return sorted(self._failures.values(), key=lambda f: f.get("at") or 0.0)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        failure = getattr(report, REPORT_FAILURE, None)
        if failure is not None:
            self._note_failure(failure)
        data = getattr(report, REPORT_COMPARISON, None)
        if data is None:
            return
        self.comparisons.append(comparison.from_dict(data))
        if self.header is None:
            self.header = getattr(report, REPORT_HEADER, None)
        details = getattr(report, REPORT_DETAILS, None)
        if details:
            self.details.append(details)
        for name, files in (getattr(report, REPORT_CLUSTERS, None) or {}).items():
            self.clusters.setdefault(name, files)

    def pytest_terminal_summary(self, terminalreporter, exitstatus: int, config: pytest.Config) -> None:
        if hasattr(config, "workerinput"):
            return
        failures = self.failures(config)
        if failures:
            terminalreporter.section("pytest-pd: cluster failures")
            for failure in failures:
                for line in text_report.failure_lines(failure):
                    terminalreporter.write_line(line)
        if not self.comparisons:
            return
        terminalreporter.section("pytest-pd: candidate vs baseline")
        for comp in self.comparisons:
            for line in text_report.terminal_lines(comp):
                terminalreporter.write_line(line)
            terminalreporter.write_line("")
        step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
        if step_summary:
            with Path(step_summary).open("a", encoding="utf-8") as fh:
                fh.write(text_report.markdown(self.comparisons) + "\n")

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_summary(self, prefix: list, summary: list, postfix: list, session) -> None:
        failures = self.failures(session.config)
        if self.comparisons or failures:
            prefix.append(
                html_report.summary_section(
                    self.comparisons, self.header, self.details, self.clusters, failures
                )
            )
