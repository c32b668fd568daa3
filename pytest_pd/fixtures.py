"""Session fixtures: ``pd_measurer`` (owns the clusters), ``pd_cluster`` (the candidate, up),
``pd_workload`` (what to run; parametrize it) and ``pd_run`` (candidate vs baseline, judged)."""

from __future__ import annotations

import math
import shlex
import threading
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_pd import results as store
from pytest_pd.cluster.spec import ClusterSpec
from pytest_pd.cluster.topology import Topology
from pytest_pd.comparison import Comparison, Side, compare
from pytest_pd.errors import BaselineError, PdError
from pytest_pd.measure import Measurement, Measurer, prefill_strategy, repeat_samples
from pytest_pd.thresholds import Bound
from pytest_pd.workload.prompts import Workload

BOUNDS_KEY = pytest.StashKey[list[Bound]]()
COMPARISON_KEY = pytest.StashKey[Comparison]()
EVIDENCE_KEY = pytest.StashKey["Evidence"]()
WORKLOADS_KEY = pytest.StashKey[list[Workload]]()
MEASURER_KEY = pytest.StashKey[Measurer]()

BASELINE_MODES = ("live", "stored")


@dataclass
class Evidence:
    """What the report shows besides the comparison: the two runs as the results store holds
    them (plus their per-request records), the candidate's history, where the baseline came from."""

    candidate: dict[str, Any]
    baseline: dict[str, Any] | None
    trend: list[dict[str, Any]]
    baseline_source: str
    log_runs: list[tuple[ClusterSpec, Path | None]] = field(default_factory=list)


def _path_option(config: pytest.Config, option: str, ini: str) -> Path:
    value = config.getoption(option) or config.getini(ini)
    path = Path(value)
    return path if path.is_absolute() else config.rootpath / path


def cluster_name(config: pytest.Config) -> str:
    return config.getoption("pd_cluster") or config.getini("pd_cluster")


def parse_slo(text: str | None) -> dict[str, float]:
    """``ttft_ms=2000,tpot_ms=50`` → {"ttft_ms": 2000.0, "tpot_ms": 50.0}."""
    out: dict[str, float] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise pytest.UsageError(f"--pd-slo: {part.strip()!r} is not NAME=MILLISECONDS "
                                    "(e.g. --pd-slo ttft_ms=2000,tpot_ms=50)")
    return out


def parse_band(text: str) -> float:
    """'5%' or '0.05' → 0.05."""
    text = str(text).strip()
    try:
        return float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        raise pytest.UsageError(f"--pd-noise-band: {text!r} is not a share (write 5% or 0.05)") from None


def max_age(config: pytest.Config) -> float:
    text = config.getoption("pd_baseline_max_age") or config.getini("pd_baseline_max_age")
    try:
        return store.parse_age(text)
    except ValueError as exc:
        raise pytest.UsageError(f"--pd-baseline-max-age: {exc}") from None


def compare_last(config: pytest.Config) -> bool:
    value = config.getoption("pd_compare_last")
    return bool(config.getini("pd_compare_last")) if value is None else bool(value)


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
    measurer = Measurer(
        cluster_dir=_path_option(config, "pd_cluster_dir", "pd_cluster_dir"),
        run_base=_path_option(config, "pd_run_dir", "pd_run_dir"),
        results_dir=_path_option(config, "pd_results_dir", "pd_results_dir"),
        say=_say(config),
        workdir=config.rootpath,
        repeats=config.getoption("pd_repeats"),
        slo=parse_slo(config.getoption("pd_slo")),
        save_baseline=bool(config.getoption("pd_save_baseline")),
        store_requests=bool(config.getini("pd_store_requests")),
        telemetry_interval_s=float(config.getini("pd_telemetry_interval_s")),
        keep_on_failure=bool(config.getoption("pd_keep_cluster_on_failure")),
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
    return Side(spec.label, prefill_strategy(spec), m.metrics,
                simulated=spec.engine == "sim", speedup=m.speedup,
                result_path=str(m.result_path) if m.result_path else None,
                samples=m.samples, source="live", started_at=m.started_at, model=spec.model_name)


def stored_side(data: dict[str, Any]) -> Side:
    """A run read from the results store, as one side of a comparison."""
    cluster = data["cluster"]
    sim = data.get("simulated") or {}
    return Side(cluster.get("name", "?"), cluster.get("prefill_strategy", ""), data["metrics"],
                simulated=cluster.get("engine") == "sim", speedup=float(sim.get("speedup", 1.0)),
                result_path=data.get("path"), samples=repeat_samples(data.get("repeats") or []),
                source="stored", started_at=data.get("started_at"),
                model=(data.get("model") or {}).get("name"))


def _live_view(m: Measurement) -> dict[str, Any]:
    return {**m.payload, "path": str(m.result_path) if m.result_path else None,
            "runs": [r.to_dict() for r in m.results]}


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


@dataclass
class BaselinePlan:
    live: ClusterSpec | None = None
    stored: dict[str, Any] | None = None
    source: str = ""


def plan_baseline(config: pytest.Config, measurer: Measurer, spec: ClusterSpec,
                  workload: Workload) -> BaselinePlan:
    """Where this workload's baseline comes from (``--pd-baseline``); decided before anything is
    measured, so a missing stored baseline fails at once."""
    mode = config.getoption("pd_baseline") or "auto"
    bspec = measurer.baseline_of(spec)
    if mode == "live" or measurer.cached(bspec, workload) is not None:
        return BaselinePlan(live=bspec, source="live (measured in this session)")
    path = None if mode in ("auto", "stored") else Path(mode)
    if path is not None and path.is_file():
        try:
            data = store.load_result(path)
        except (OSError, ValueError) as exc:
            raise BaselineError(f"--pd-baseline={mode}: cannot read that results file: {exc}") from None
        if data["workload"].get("id") != workload.id:
            raise BaselineError(
                f"--pd-baseline={mode} holds workload {data['workload'].get('id')!r}, but this "
                f"test runs {workload.id!r}; give a results file of the same workload (or a "
                "folder of results to search).")
        return BaselinePlan(stored=data, source=f"file {path}")
    folder = path if path is not None else measurer.results_dir
    if path is not None and not path.is_dir():
        raise BaselineError(f"--pd-baseline={mode}: no such file or folder; use live, stored, a "
                            "results JSON file, or a folder of them.")
    limit = max_age(config) if path is None else math.inf
    runs = store.find_runs(folder, bspec.label, workload.id, bspec.model_name) if folder else []
    pick = store.pick_baseline(runs, time.time(), limit)
    if pick.run is not None:
        return BaselinePlan(stored=pick.run, source=f"stored ({pick.reason}: {pick.run['path']})")
    if mode == "auto":
        return BaselinePlan(live=bspec, source="live (no usable stored run: "
                                               f"{pick.reason})")
    raise BaselineError(
        f"no stored baseline for {spec.label}: its baseline cluster {bspec.label} has "
        f"{pick.reason} of workload {workload.id} with model {bspec.model_name} in {folder}. "
        f"Create one by measuring it live and marking it as the baseline:\n"
        f"    {create_baseline_command(config)}\n"
        "or run with --pd-baseline=live.")


@pytest.fixture
def pd_run(request: pytest.FixtureRequest, pd_measurer: Measurer, pd_spec: ClusterSpec,
           pd_workload: Workload) -> Comparison:
    """Runs ``pd_workload`` on the candidate and (when a ratio bound asks for it) gets its
    baseline (live, stored or from a file: ``--pd-baseline``), then judges every ``pd_threshold``
    marker and compares with the last run. The plugin fails the test on any failed verdict."""
    config = request.config
    bounds = request.node.stash.get(BOUNDS_KEY, [])
    planned = config.stash.get(WORKLOADS_KEY, [])
    plan = None
    if any(b.is_ratio for b in bounds):
        plan = plan_baseline(config, pd_measurer, pd_spec, pd_workload)
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
        history = store.find_runs(pd_measurer.results_dir, pd_spec.label, pd_workload.id,
                                  pd_spec.model_name)
    last = None
    if compare_last(config):
        previous = store.previous_run(history, pd_measurer.session, candidate.started_at)
        last = stored_side(previous) if previous else None
    comp = compare(request.node.nodeid, pd_workload.id, _side(candidate), baseline_side, bounds,
                   last=last, noise_band=parse_band(config.getoption("pd_noise_band")
                                                     or config.getini("pd_noise_band")),
                   fail_on_regression=bool(config.getoption("pd_fail_on_regression")),
                   max_mismatch_share=pd_workload.max_mismatch_share)
    trend_n = int(config.getoption("pd_trend_runs"))
    request.node.stash[COMPARISON_KEY] = comp
    request.node.stash[EVIDENCE_KEY] = Evidence(
        candidate=_live_view(candidate), baseline=baseline_view,
        trend=[{"started_at": r.get("started_at"), "metrics": r["metrics"], "path": r["path"],
                "session": r.get("session")} for r in history[-trend_n:]] if trend_n > 0 else [],
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
