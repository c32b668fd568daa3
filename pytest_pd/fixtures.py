"""Session fixtures: ``pd_measurer`` (owns the clusters), ``pd_cluster`` (the candidate, up),
``pd_workload`` (what to run; parametrize it) and ``pd_run`` (candidate vs baseline, judged)."""

from __future__ import annotations

import shlex
import threading
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_pd import results as store
from pytest_pd.cluster import engines
from pytest_pd.cluster.spec import ClusterSpec
from pytest_pd.cluster.topology import Topology
from pytest_pd.errors import PdError
from pytest_pd.judge.baseline import plan_baseline
from pytest_pd.judge.comparison import Comparison, Side, compare
from pytest_pd.judge.thresholds import Bound
from pytest_pd.measure import Measurer
from pytest_pd.measurement import Measurement, prefill_strategy, repeat_samples
from pytest_pd.options import Settings
from pytest_pd.workload.spec import Workload

BOUNDS_KEY = pytest.StashKey[list[Bound]]()
COMPARISON_KEY = pytest.StashKey[Comparison]()
EVIDENCE_KEY = pytest.StashKey["Evidence"]()
WORKLOADS_KEY = pytest.StashKey[list[Workload]]()
MEASURER_KEY = pytest.StashKey[Measurer]()

SETTINGS_KEY = pytest.StashKey[Settings]()


@dataclass
class Evidence:
    """What the report shows besides the comparison: the two runs as the results store holds
    them (plus their per-request records), the candidate's history, where the baseline came from."""

    candidate: dict[str, Any]
    baseline: dict[str, Any] | None
    trend: list[dict[str, Any]]
    baseline_source: str
    log_runs: list[tuple[ClusterSpec, Path | None]] = field(default_factory=list)


def settings_of(config: pytest.Config) -> Settings:
    return config.stash[SETTINGS_KEY]


def cluster_name(config: pytest.Config) -> str:
    return settings_of(config).cluster


def _say(config: pytest.Config):
    """Progress lines on the terminal as they happen (bring-up, runs, teardown), also while
    pytest captures output and when stdout is a CI log file."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    one_at_a_time = threading.Lock()  # health gates and SSH starts say things from threads

    def say(text: str) -> None:
        if reporter is None:
            return
        held = capture.global_and_fixture_disabled() if capture is not None else nullcontext()
        with one_at_a_time, held:
            reporter.ensure_newline()
            reporter.write_line(f"[pytest-pd] {text}")
            reporter.flush()

    return say


@pytest.fixture(scope="session")
def pd_measurer(request: pytest.FixtureRequest) -> Iterator[Measurer]:
    """Brings clusters up one at a time and caches every (cluster, workload) measurement."""
    config = request.config
    opts = settings_of(config)
    measurer = Measurer(
        cluster_dir=opts.cluster_dir,
        run_base=opts.run_dir,
        results_dir=opts.results_dir,
        say=_say(config),
        workdir=config.rootpath,
        repeats=opts.repeats,
        slo=opts.slo,
        save_baseline=opts.save_baseline,
        store_requests=opts.store_requests,
        telemetry_interval_s=opts.telemetry_interval_s,
        keep_on_failure=opts.keep_on_failure,
    )
    config.stash[MEASURER_KEY] = measurer
    try:
        yield measurer
    finally:
        measurer.close(keep=measurer.keep_on_failure and request.session.testsfailed > 0)


@pytest.fixture(scope="session")
def pd_spec(pd_measurer: Measurer, pytestconfig: pytest.Config) -> ClusterSpec:
    """The candidate cluster's validated spec (``--cluster``)."""
    return pd_measurer.spec(cluster_name(pytestconfig))


@pytest.fixture
def pd_cluster(pd_measurer: Measurer, pd_spec: ClusterSpec) -> Topology:
    """The candidate cluster, up and ready for this test (brought up again if a baseline
    measurement replaced it); ``.router_url`` is where to send requests."""
    return pd_measurer.up(pd_spec)


@pytest.fixture(scope="session")
def pd_workload() -> Workload:
    """The seed workload by default; parametrize ``pd_workload`` to run others."""
    return Workload()


def _side(m: Measurement) -> Side:
    spec = m.cluster
    return Side(
        spec.label,
        prefill_strategy(spec),
        m.metrics,
        simulated=engines.engine_of(spec).simulated,
        speedup=m.speedup,
        result_path=str(m.result_path) if m.result_path else None,
        samples=m.samples,
        source="live",
        started_at=m.started_at,
        model=spec.model_name,
    )


def stored_side(data: dict[str, Any]) -> Side:
    """A run read from the results store, as one side of a comparison."""
    cluster = data["cluster"]
    sim = data.get("simulated") or {}
    return Side(
        cluster.get("name", "?"),
        cluster.get("prefill_strategy", ""),
        data["metrics"],
        simulated=cluster.get("engine") == "sim",
        speedup=float(sim.get("speedup", 1.0)),
        result_path=data.get("path"),
        samples=repeat_samples(data.get("repeats") or []),
        source="stored",
        started_at=data.get("started_at"),
        model=(data.get("model") or {}).get("name"),
    )


def _live_view(m: Measurement) -> dict[str, Any]:
    return {
        **m.payload,
        "path": str(m.result_path) if m.result_path else None,
        "runs": [r.to_dict() for r in m.results],
    }


def _stored_view(data: dict[str, Any]) -> dict[str, Any]:
    runs = []
    for block in data.get("requests") or []:
        try:
            run = store.decode_requests(block)
        except (ValueError, OSError):
            run = None
        if run is not None:
            runs.append(run)
    return {**{k: v for k, v in data.items() if k != "requests"}, "runs": runs}


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


@pytest.fixture
def pd_run(
    request: pytest.FixtureRequest, pd_measurer: Measurer, pd_spec: ClusterSpec, pd_workload: Workload
) -> Comparison:
    """Runs ``pd_workload`` on the candidate and (when a ratio bound asks for it) gets its
    baseline (live, stored or from a file: ``--pd-baseline``), then judges every ``pd_threshold``
    marker and compares with the last run. The plugin fails the test on any failed verdict."""
    config = request.config
    opts = settings_of(config)
    bounds = request.node.stash.get(BOUNDS_KEY, [])
    planned = config.stash.get(WORKLOADS_KEY, [])
    plan = None
    if any(b.is_ratio for b in bounds):
        plan = plan_baseline(
            opts.baseline,
            opts.baseline_max_age_s,
            pd_measurer,
            pd_spec,
            pd_workload,
            create_baseline_command(config),
        )
    candidate = pd_measurer.measure(pd_spec, pd_workload, also=planned)
    baseline_side, baseline_view = None, None
    log_runs: list[tuple[ClusterSpec, Path | None]] = [(pd_spec, candidate.run_dir)]
    if plan is not None and plan.live is not None:
        baseline = pd_measurer.measure(plan.live, pd_workload, also=planned)
        baseline_side, baseline_view = _side(baseline), _live_view(baseline)
        log_runs.append((plan.live, baseline.run_dir))
    elif plan is not None and plan.stored is not None:
        baseline_side, baseline_view = stored_side(plan.stored), _stored_view(plan.stored)

    history: list[dict[str, Any]] = []
    if pd_measurer.results_dir is not None:
        history = store.find_runs(pd_measurer.results_dir, pd_spec.label, pd_workload.id, pd_spec.model_name)
    last = None
    if opts.compare_last:
        previous = store.previous_run(history, pd_measurer.session, candidate.started_at)
        last = stored_side(previous) if previous else None
    comp = compare(
        request.node.nodeid,
        pd_workload.id,
        _side(candidate),
        baseline_side,
        bounds,
        last=last,
        noise_band=opts.noise_band,
        fail_on_regression=opts.fail_on_regression,
        max_mismatch_share=pd_workload.max_mismatch_share,
    )
    trend_n = opts.trend_runs
    request.node.stash[COMPARISON_KEY] = comp
    request.node.stash[EVIDENCE_KEY] = Evidence(
        candidate=_live_view(candidate),
        baseline=baseline_view,
        trend=[
            {
                "started_at": r.get("started_at"),
                "metrics": r["metrics"],
                "path": r["path"],
                "session": r.get("session"),
            }
            for r in history[-trend_n:]
        ]
        if trend_n > 0
        else [],
        baseline_source=plan.source if plan else "none (no ratio bound)",
        log_runs=log_runs,
    )
    return comp


def log_tails(config: pytest.Config, evidence: Evidence, lines: int = 30) -> dict[str, dict[str, str]]:
    """{cluster: {process: last log lines}} of the clusters a failed test used."""
    measurer = config.stash.get(MEASURER_KEY, None)
    if measurer is None:
        return {}
    out = {}
    for spec, run_dir in evidence.log_runs:
        try:
            out[spec.label] = measurer.log_tails(spec, run_dir, lines)
        except (OSError, PdError):
            continue
    return out
