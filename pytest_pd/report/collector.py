"""Collects what the tests' reports carry (their comparisons, trends, log tails, cluster
failures: from this process or from pytest-xdist workers) and writes the terminal summary, the
GitHub step summary and the HTML report's top section. The details (charts, telemetry) are
rendered here, from the run records in the results store."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

from pytest_pd import results as store
from pytest_pd.failure import Failure
from pytest_pd.judge.comparison import Comparison, from_dict
from pytest_pd.record import RunRecord
from pytest_pd.report import html as html_report
from pytest_pd.report import summary as text_report
from pytest_pd.report.header import report_header

# Attributes of a test report (they travel from xdist workers to the controller with it)
REPORT_OUTCOME = "pd_outcome"  # {"comparison": …, "trend": [results files], "tails": {…}}
REPORT_FAILURE = "pd_failure"  # Failure.model_dump() of a failed bring-up or run


class ReportSource(Protocol):
    """What the report reads of the session: its pytest config (for the suite's extras hook),
    the failures of this process and the records it already holds (results file → record)."""

    config: pytest.Config
    records: dict[str, RunRecord]

    @property
    def failures(self) -> list[Failure]: ...


@dataclass
class Outcome:
    """One judged test, as its report carries it."""

    comparison: Comparison
    trend: list[str]  # results files of the trend chart, oldest first
    tails: dict[str, dict[str, str]]  # cluster → process → last log lines (failed tests)


class ReportCollector:
    def __init__(self, session: ReportSource) -> None:
        self.session = session
        self.outcomes: list[Outcome] = []
        self._failures: dict[tuple[str, float], Failure] = {}

    @property
    def comparisons(self) -> list[Comparison]:
        return [o.comparison for o in self.outcomes]

    def failures(self) -> list[Failure]:
        """Failed bring-ups and runs: from test reports (xdist workers too) and from this
        process's measurer (an interrupted run has no test report)."""
        for failure in self.session.failures:
            self._failures.setdefault(failure.key, failure)
        return sorted(self._failures.values(), key=lambda f: f.at)

    def record(self, path: str | None) -> RunRecord | None:
        """The full record stored at ``path``: this process's, else read from the store."""
        if not path:
            return None
        if path not in self.session.records:
            with contextlib.suppress(OSError, ValueError):
                self.session.records[path] = store.load_result(Path(path))
        return self.session.records.get(path)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        failure = getattr(report, REPORT_FAILURE, None)
        if failure is not None:
            f = Failure.model_validate(failure)
            self._failures.setdefault(f.key, f)
        outcome = getattr(report, REPORT_OUTCOME, None)
        if outcome is not None:
            self.outcomes.append(
                Outcome(from_dict(outcome["comparison"]), outcome["trend"], outcome["tails"])
            )

    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
        if hasattr(config, "workerinput"):
            return
        failures = self.failures()
        if failures:
            terminalreporter.section("pytest-pd: cluster failures")
            for failure in failures:
                for line in text_report.failure_lines(failure):
                    terminalreporter.write_line(line)
        if not self.outcomes:
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

    def details(self, outcome: Outcome) -> str:
        """Charts, trend, telemetry, log tails and the suite's extras of one test."""
        comp = outcome.comparison
        candidate = self.record(comp.candidate.path) or comp.candidate
        baseline = (self.record(comp.baseline.path) or comp.baseline) if comp.baseline else None
        trend = [r for r in map(self.record, outcome.trend) if r is not None]
        extras = self.session.config.hook.pytest_pd_report_extras(config=self.session.config, comparison=comp)
        return html_report.details_section(comp, candidate, baseline, trend, outcome.tails, extras)

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_summary(self, prefix: list, summary: list, postfix: list, session: Any) -> None:
        failures = self.failures()
        if not (self.outcomes or failures):
            return
        comps = self.comparisons
        runs = [r for c in comps for r in (c.candidate, c.baseline) if r is not None]
        prefix.append(
            html_report.summary_section(
                comps,
                report_header(comps[0]) if comps else None,
                [self.details(o) for o in self.outcomes],
                html_report.cluster_files(runs),
                failures,
            )
        )
