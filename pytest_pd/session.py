"""The pytest-pd session: one object per pytest process, made in ``pytest_configure`` and
registered as a plugin. It holds the session's settings and its measurer (made when the first test
asks for a cluster), runs what ``pd_run`` asks (candidate and baseline measured, judged) and puts
the outcome on the test's report, from where the report collector (``report/collector.py``) builds
the summaries, on this process or on the xdist controller."""

from __future__ import annotations

import contextlib
import shlex
import threading
import warnings
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_pd import results as store
from pytest_pd.catalog import HISTORY_METRICS
from pytest_pd.cluster.spec import ClusterSpec
from pytest_pd.cluster.topology import Topology
from pytest_pd.errors import PdError, PdStoreWarning
from pytest_pd.failure import Failure
from pytest_pd.history.verdict import HistorySettings, history_findings, open_regressions
from pytest_pd.judge.baseline import BaselinePlan, plan_baseline
from pytest_pd.judge.capacity import CapacitySpec, capacity_record
from pytest_pd.judge.comparison import Comparison, compare, to_dict
from pytest_pd.judge.thresholds import Bound
from pytest_pd.measure import Hooks, Measurer
from pytest_pd.option_values import Settings
from pytest_pd.record import RunRecord, capacity_key
from pytest_pd.report import html as html_report
from pytest_pd.report import summary as text_report
from pytest_pd.report.collector import REPORT_FAILURE, REPORT_OUTCOME
from pytest_pd.store.source import RunSource, on_this_machine
from pytest_pd.store.summary import StoredRun
from pytest_pd.twin.capacity import predicted_capacity
from pytest_pd.twin.predict import prediction_misses
from pytest_pd.workload.spec import Workload
from pytest_pd.workload.sweep import at_load

SESSION_KEY = pytest.StashKey["PdSession"]()
BOUNDS_KEY = pytest.StashKey[list[Bound]]()
PREDICTION_KEY = pytest.StashKey[tuple[float, tuple[str, ...]]]()
CAPACITY_KEY = pytest.StashKey[CapacitySpec]()
COMPARISON_KEY = pytest.StashKey[Comparison]()
HISTORY_KEY = pytest.StashKey[HistorySettings]()  # a test's pd_history marker over the options
EVIDENCE_KEY = pytest.StashKey["Evidence"]()


@dataclass
class Evidence:
    """What the report shows of a test besides its comparison: the stored runs of its trend
    chart, and the clusters (with their run directories) whose log tails a failure shows."""

    trend: list[str] = field(default_factory=list)
    log_runs: list[tuple[ClusterSpec, Path | None]] = field(default_factory=list)


class PytestHooks(Hooks):
    """A measurer's events as the ``pytest_pd_*`` hooks of ``hookspec.py``; a saved run goes
    to the results index too."""

    def __init__(self, config: pytest.Config, source: RunSource) -> None:
        self.config = config
        self.source = source

    def saved(self, record: RunRecord, path: Path) -> None:
        self.source.saved(record, path)

    def record(self, record: RunRecord) -> None:
        self.config.hook.pytest_pd_record(config=self.config, record=record)

    def cluster_up(self, topology: Topology) -> None:
        self.config.hook.pytest_pd_cluster_up(config=self.config, topology=topology)

    def cluster_down(self, topology: Topology) -> None:
        self.config.hook.pytest_pd_cluster_down(config=self.config, topology=topology)


def session_of(config: pytest.Config) -> PdSession:
    return config.stash[SESSION_KEY]


class PdSession:
    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.planned: list[Workload] = []  # every parametrized workload of the selected tests
        self.records: dict[str, RunRecord] = {}  # results file → the record, for the report
        self._measurer: Measurer | None = None
        self._shown_failures: set[tuple[str, float]] = set()
        self.source = RunSource(
            settings.results_dir, settings.results_url, self._store_warning, settings.results_origin
        )

    def _store_warning(self, text: str) -> None:
        """The results index cannot be used: said on the terminal and as a warning."""
        progress_printer(self.config)(text)
        with contextlib.suppress(Warning):  # -W error must not turn it into a failed teardown
            warnings.warn(PdStoreWarning(text), stacklevel=1)

    @property
    def measurer(self) -> Measurer:
        """Brings clusters up one at a time; caches every (cluster, workload) record."""
        if self._measurer is None:
            opts = self.settings
            extra: dict[str, Any] = {}
            for found in self.config.hook.pytest_pd_environment(config=self.config):
                extra.update(found or {})
            self._measurer = Measurer(
                cluster_dir=opts.cluster_dir,
                run_base=opts.run_dir,
                results_dir=opts.results_dir,
                say=progress_printer(self.config),
                workdir=self.config.rootpath,
                repeats=opts.repeats,
                slo=opts.slo,
                save_baseline=opts.save_baseline,
                store_requests=opts.store_requests,
                telemetry_interval_s=opts.telemetry_interval_s,
                keep_on_failure=opts.keep_on_failure,
                hooks=PytestHooks(self.config, self.source),
                environment_extra=extra,
            )
        return self._measurer

    @property
    def failures(self) -> list[Failure]:
        """Failed bring-ups and runs of this process (an interrupted run has no test report)."""
        return list(self._measurer.failures) if self._measurer is not None else []

    def close(self, *, keep: bool) -> None:
        try:
            if self._measurer is not None:
                self._measurer.close(keep=keep and self._measurer.keep_on_failure)
        finally:
            self.source.close()

    # ------------------------------------------------------------------ pd_run

    def run(self, item: pytest.Item, spec: ClusterSpec, workload: Workload) -> Comparison:
        """``workload`` on the candidate ``spec`` and (when a ratio bound asks for it) on its
        baseline, judged against the test's bounds and the candidate's last run."""

        def measure(cluster: ClusterSpec) -> RunRecord:
            return self.measurer.measure(cluster, workload, also=self.planned)

        return self._compare(item, spec, workload, workload.id, measure)

    def capacity(self, item: pytest.Item, spec: ClusterSpec, workload: Workload) -> Comparison:
        """The capacity search of the test's ``pd_capacity`` marker on the candidate and (when a
        ratio bound asks for it) on its baseline, judged like a run: its record's metrics are the
        capacity and the statistics at that load."""
        wanted = item.stash[CAPACITY_KEY]
        key = capacity_key(workload.id, wanted.over, wanted.slo, wanted.loads)
        return self._compare(
            item, spec, workload, key, lambda cluster: self._capacity(cluster, workload, wanted)
        )

    def _compare(
        self,
        item: pytest.Item,
        spec: ClusterSpec,
        workload: Workload,
        key: str,
        measure: Callable[[ClusterSpec], RunRecord],
    ) -> Comparison:
        opts = self.settings
        bounds = item.stash.get(BOUNDS_KEY, [])
        plan = self._baseline_plan(spec, workload, key) if any(b.is_ratio for b in bounds) else None
        live = plan.live if plan is not None else None
        up = self.measurer.current
        # whichever of the two is up already goes first: one bring-up less per test
        up_first = live is not None and up is not None and up.spec.label == live.label
        baseline = measure(live) if live is not None and up_first else None
        candidate = measure(spec)
        log_runs = [(spec, Path(candidate.run_dir) if candidate.run_dir else None)]
        if live is not None:
            baseline = baseline or measure(live)
            log_runs.append((live, Path(baseline.run_dir) if baseline.run_dir else None))
        elif plan is not None:
            baseline = plan.stored
        stored = self.source.runs(spec.label, key, spec.model_name)
        completed = [r for r in on_this_machine(stored) if r.failure is None]
        loaded = {r.path: r for r in (*self.records.values(), candidate, baseline) if r and r.path}

        def load(run: StoredRun) -> RunRecord | None:  # a record this session holds is not read again
            return loaded.get(run.path) or self.source.load(run)

        last = None
        if opts.compare_last:
            before = store.previous_run(completed, self.measurer.session, candidate.started_at)
            last = load(before) if before is not None else None
        comp = compare(
            item.nodeid,
            key,
            candidate,
            baseline,
            bounds,
            last=last,
            noise_band=opts.noise_band,
            fail_on_regression=opts.fail_on_regression,
            max_mismatch_share=workload.max_mismatch_share,
            baseline_source=plan.source if plan else "none (no ratio bound)",
        )
        self._judge_series(comp, item.stash.get(HISTORY_KEY, opts.history), spec, plan, key, bounds, stored)
        if PREDICTION_KEY in item.stash:
            max_error, stats = item.stash[PREDICTION_KEY]
            comp.problems += prediction_misses(candidate.prediction, max_error, stats)
        shown = completed[-opts.trend_runs :] if opts.trend_runs > 0 else []
        trend = [r for r in map(load, shown) if r is not None]
        for record in (candidate, baseline, *trend):
            if record is not None and record.path:
                self.records[record.path] = record
        item.stash[COMPARISON_KEY] = comp
        item.stash[EVIDENCE_KEY] = Evidence([r.path for r in trend if r.path], log_runs)
        return comp

    def _judge_series(
        self,
        comp: Comparison,
        settings: HistorySettings,
        spec: ClusterSpec,
        plan: BaselinePlan | None,
        key: str,
        bounds: list[Bound],
        runs: list[StoredRun],
    ) -> None:
        """The stored series of the candidate (and of its ratio to the baseline, on the nights both
        were measured): their change points and the regressions still open."""
        comp.history_mode = settings.mode
        if settings.mode == "off":
            return
        baseline_runs: list[StoredRun] = []
        ratios = [b.metric for b in bounds if b.is_ratio]
        if plan is not None and ratios:
            base = plan.live or self.measurer.baseline_of(spec)
            baseline_runs = self.source.runs(base.label, key, base.model_name)
        followed = settings.metrics or (*HISTORY_METRICS, *(b.metric for b in bounds))
        metrics = list(dict.fromkeys(followed))
        ratios = [m for m in ratios if m in metrics]
        findings = history_findings(
            runs, metrics, settings, baseline_runs=baseline_runs, ratio_metrics=ratios
        )
        comp.findings = [f.to_dict() for f in findings]
        comp.history_regressions = [f.text for f in open_regressions(findings)]

    def _capacity(self, spec: ClusterSpec, workload: Workload, wanted: CapacitySpec) -> RunRecord:
        """The capacity record of ``spec`` (searched now, one load after another on one
        bring-up, each load's run stored as usual), or this session's."""
        key = capacity_key(workload.id, wanted.over, wanted.slo, wanted.loads)
        hit = self.measurer.cached(spec, key)
        if hit is not None and hit.capacity is not None and hit.capacity.search == wanted.search_settings:
            return hit
        runs: dict[float, RunRecord] = {}

        def evaluate(load: float) -> tuple[dict[str, float], int]:
            record = self.measurer.measure(spec, at_load(workload, wanted.over, load))
            runs[load] = record
            return dict(record.metrics), int(record.metrics.get("failed") or 0)

        found = wanted.run(evaluate)
        record = capacity_record(
            found,
            runs,
            workload,
            predicted_capacity(spec, workload, wanted),
            wanted.loads,
            wanted.search_settings,
        )
        self.measurer.remember(spec, record)
        return record

    def _baseline_plan(self, spec: ClusterSpec, workload: Workload, key: str) -> BaselinePlan:
        opts = self.settings
        planned = plan_baseline(
            opts.baseline,
            opts.baseline_max_age_s,
            self.measurer,
            spec,
            workload,
            create_baseline_command(self.config),
            key,
            stored=self.source.local_runs,
        )
        chosen = self.config.hook.pytest_pd_baseline(
            config=self.config, spec=spec, workload=workload, planned=planned
        )
        return chosen if chosen is not None else planned

    def log_tails(self, evidence: Evidence, lines: int = 30) -> dict[str, dict[str, str]]:
        """{cluster: {process: last log lines}} of the clusters a failed test used."""
        out = {}
        for spec, run_dir in evidence.log_runs:
            with contextlib.suppress(OSError, PdError):
                out[spec.label] = self.measurer.log_tails(spec, run_dir, lines)
        return out

    # ------------------------------------------------------------------ pytest hooks

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo) -> None:
        """Ctrl-C or SIGTERM: tear clusters down at session end even with
        --pd-keep-cluster-on-failure (pytest calls this before it finalizes session fixtures)."""
        if self._measurer is not None:
            self._measurer.keep_on_failure = False

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        """Put the test's outcome (its comparison, trend and log tails) and any cluster failure
        on its report: they reach the xdist controller with it."""
        report = yield
        if call.excinfo is not None and call.excinfo.errisinstance(PdError):
            self._failure_on(report, call.excinfo.value)
        comp = item.stash.get(COMPARISON_KEY, None)
        if comp is None or report.when != "call":
            return report
        evidence = item.stash.get(EVIDENCE_KEY, Evidence())
        outcome = {
            "comparison": to_dict(comp),
            "trend": evidence.trend,
            "tails": self.log_tails(evidence) if report.failed else {},
        }
        setattr(report, REPORT_OUTCOME, outcome)
        properties = [
            ("pd_workload", comp.workload_id),
            ("pd_outcome", text_report.outcome_word(comp)),
            ("pd_result", comp.candidate.path or ""),
            *(("pd_history_regression", text) for text in comp.history_regressions),
        ]
        report.user_properties += properties
        item.user_properties += properties  # the JUnit XML reads them from the teardown report
        _add_html(report, "pytest-pd", html_report.comparison_table(comp))
        return report

    def _failure_on(self, report: pytest.TestReport, exc: BaseException) -> None:
        """A user error (bad cluster file, failed bring-up, lost process): its one-paragraph
        message, not a traceback through our internals (also when pytest re-raises the cached
        error of a session fixture for a later test); a failed bring-up or run once per session."""
        report.longrepr = f"{type(exc).__name__}: {exc}"
        failure: Failure | None = getattr(exc, "failure", None)
        if failure is None or report.when != "setup" or failure.key in self._shown_failures:
            return
        self._shown_failures.add(failure.key)
        setattr(report, REPORT_FAILURE, failure.model_dump())
        _add_html(report, "pytest-pd failure", html_report.failure_section([failure]))


def _add_html(report: pytest.TestReport, name: str, content: str) -> None:
    """Add an HTML extra to the test's entry in pytest-html's report (the dict its
    ``extras.html`` makes; without pytest-html nothing reads it)."""
    extra = {"name": name, "format_type": "html", "extension": "html", "content": html_report.STYLE + content}
    setattr(report, "extras", [*getattr(report, "extras", []), extra])  # noqa: B010 (not a TestReport field)


def progress_printer(config: pytest.Config) -> Callable[[str], None]:
    """Progress lines on the terminal as they happen (bring-up, runs, teardown), also while
    pytest captures output and when stdout is a CI log file."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    one_at_a_time = threading.Lock()  # health gates and SSH starts say things from threads

    def say(text: str) -> None:
        if reporter is None:
            return
        held = capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext()
        with one_at_a_time, held:
            reporter.ensure_newline()
            reporter.write_line(f"[pytest-pd] {text}")
            reporter.flush()

    return say


def create_baseline_command(config: pytest.Config) -> str:
    """This session's command line, changed to measure the baseline live and mark it stored."""
    args, skip = [], False
    for arg in config.invocation_params.args:
        if skip:
            skip = False
            continue
        if arg in ("--pd-baseline", "--pd-baseline-max-age"):
            skip = True
            continue
        if arg.startswith(("--pd-baseline=", "--pd-baseline-max-age=", "--pd-save-baseline")):
            continue
        args.append(arg)
    return shlex.join(["pytest", *args, "--pd-baseline=live", "--pd-save-baseline"])
