"""Measurements: bring clusters up one at a time, run workloads through their routers, store results.

Knows nothing of pytest: the fixtures and the CLI both drive it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pytest_pd.cluster import engines
from pytest_pd.cluster.hosts import tail_file
from pytest_pd.cluster.spec import ClusterSpec
from pytest_pd.cluster.spec_file import load_cluster
from pytest_pd.cluster.state import STATE_FILE
from pytest_pd.cluster.topology import Topology
from pytest_pd.deathwatch import DeathWatch
from pytest_pd.environment import engine_versions, environment
from pytest_pd.errors import BringUpError, HostError, PdError
from pytest_pd.failure import Failure
from pytest_pd.record import Environment, RunRecord, build_record
from pytest_pd.redaction import scrub
from pytest_pd.results import save_result
from pytest_pd.run_context import run_context
from pytest_pd.rundir import log_files, new_run_dir
from pytest_pd.server_calls import flush_caches, server_info
from pytest_pd.telemetry import cluster_sampler, gpu_inventory
from pytest_pd.twin.predict import prediction_of, twin_problems
from pytest_pd.workload.metrics import RunSummary, summarize
from pytest_pd.workload.prompts import build_prompts
from pytest_pd.workload.result import RunResult
from pytest_pd.workload.run_sync import run_workload_sync
from pytest_pd.workload.spec import Prompt, Workload
from pytest_pd.workload.tokenizer import load_tokenizer

Say = Callable[[str], None]
E = TypeVar("E", bound=BaseException)


class Hooks:
    """What a measurer's owner does at its events (a pytest session calls its hooks: see
    ``hookspec.py``); nothing, by default."""

    def record(self, record: RunRecord) -> None:
        """``record`` is about to be stored (may change it)."""

    def saved(self, record: RunRecord, path: Path) -> None:
        """``record`` was written to ``path`` in the results folder."""

    def cluster_up(self, topology: Topology) -> None:
        """``topology`` is up; raising fails its bring-up."""

    def cluster_down(self, topology: Topology) -> None:
        """``topology`` is about to be torn down."""


class Measurer:
    """Keeps at most one cluster up; measures each (cluster, workload) once and caches it."""

    def __init__(
        self,
        cluster_dir: Path,
        run_base: Path,
        results_dir: Path | None,
        *,
        say: Say = print,
        workdir: Path | None = None,
        repeats: int = 1,
        slo: Mapping[str, float] | None = None,
        save_baseline: bool = False,
        store_requests: bool = True,
        telemetry_interval_s: float = 1.0,
        session: str | None = None,
        keep_on_failure: bool = False,
        hooks: Hooks | None = None,
        environment_extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.keep_on_failure = keep_on_failure
        self.hooks = hooks or Hooks()
        self.repeats = max(1, int(repeats))
        self.slo = dict(slo or {})
        self.save_baseline = save_baseline
        self.store_requests = store_requests
        self.telemetry_interval_s = telemetry_interval_s
        self.session = session or f"{socket.gethostname()}-{time.time():.6f}"
        self.session_started = time.time()
        self.cluster_dir = cluster_dir
        self.run_base = run_base
        self.results_dir = results_dir
        self.say = say
        self.workdir = workdir or Path.cwd()
        self.current: Topology | None = None
        self._specs: dict[str, ClusterSpec] = {}
        self._broken: dict[str, PdError] = {}  # cluster → its first failure
        self.failures: list[Failure] = []  # every failed bring-up or run, in order
        self.kept: list[Topology] = []  # left running by --pd-keep-cluster-on-failure
        self._cache: dict[tuple[str, str], RunRecord] = {}
        self._errors: dict[tuple[str, str], PdError] = {}
        self._tokenizers: dict[str, Any] = {}
        self._prompts: dict[tuple[str, str], list[Prompt]] = {}
        self.env = Environment(**{**environment(self.workdir), **(environment_extra or {})})

    def spec(self, name: str) -> ClusterSpec:
        if name not in self._specs:
            spec = load_cluster(name, self.cluster_dir)
            problems = twin_problems(spec)
            if problems:
                raise spec.file_error(problems)
            self._specs[spec.label] = spec
            self._specs[name] = spec
        return self._specs[name]

    def baseline_of(self, spec: ClusterSpec) -> ClusterSpec:
        if not spec.baseline:
            raise PdError(
                f"cluster {spec.label} names no baseline, so ratio thresholds (max_ratio=, "
                f"min_ratio=) cannot be evaluated. Add `baseline: NAME` to {spec.source}, or use "
                "absolute bounds (max=, min=)."
            )
        return self.spec(spec.baseline)

    def cached(self, spec: ClusterSpec, workload: Workload | str) -> RunRecord | None:
        """The record measured in this session of a workload (or of a :attr:`RunRecord.key`)."""
        return self._cache.get((spec.label, workload if isinstance(workload, str) else workload.id))

    def remember(self, spec: ClusterSpec, record: RunRecord) -> Path | None:
        """Keep a record derived from this session's runs (a capacity search) as if measured:
        cached under its key, passed to the record hook, saved to the results store."""
        self._cache[(spec.label, record.key)] = record
        return self._save(record)

    def measure(self, spec: ClusterSpec, workload: Workload, also: Sequence[Workload] = ()) -> RunRecord:
        """The record of ``workload`` run on ``spec``; ``also`` are workloads to run in the same
        bring-up (so each cluster comes up once per session, not once per test)."""
        hit = self.cached(spec, workload)
        if hit is not None:
            return hit
        if (spec.label, workload.id) in self._errors:  # failed earlier, run along with another
            raise self._errors[(spec.label, workload.id)]
        self._prompts_for(spec, workload)  # a bad tokenizer path fails before any bring-up
        todo = [workload]
        for w in also:
            if w.id == workload.id or self.cached(spec, w) or (spec.label, w.id) in self._errors:
                continue
            try:
                self._prompts_for(spec, w)
                todo.append(w)
            except PdError as exc:  # belongs to the test that asks for `w`, not to this one
                self._errors[(spec.label, w.id)] = exc
        try:
            topology = self.up(spec)
        except PdError as exc:  # every workload that cannot run gets a results file saying why
            self._store_failure(exc, todo)
            raise
        for i, w in enumerate(todo):
            try:
                self._cache[(spec.label, w.id)] = self._run(spec, topology, w)
            except PdError as exc:
                if getattr(exc, "failure", None) is None:
                    self._failure(spec, "run", exc, topology.run_dir)
                self._store_failure(exc, [w])
                broken = self._broken.get(spec.label)
                if broken is not None:  # the rest cannot run: they fail with the same cause
                    self._store_failure(broken, todo[i + 1 :])
                    for rest in todo[i + 1 :]:
                        self._errors[(spec.label, rest.id)] = broken
                if w is workload:
                    raise
                self._errors[(spec.label, w.id)] = exc
                if broken is not None:
                    break
            except KeyboardInterrupt as exc:  # Ctrl-C or a CI cancel: say so in the store too
                self._store_failure(self._failure(spec, "interrupted", exc, topology.run_dir), [w])
                raise
        return self._cache[(spec.label, workload.id)]

    def log_tails(self, spec: ClusterSpec, run_dir: Path | None, lines: int = 30) -> dict[str, str]:
        """The last lines of every server log and the router log of ``spec``: from the hosts
        while it is up, else from the run directory (where teardown copied them)."""
        out: dict[str, str] = {}
        current = self.current
        if current is not None and current.spec.label == spec.label:
            for item in current.running:
                with contextlib.suppress(Exception):
                    out[item.command.name] = current.tail(item, lines)
        if not out and run_dir is not None:
            for path in log_files(run_dir):
                out[path.stem] = tail_file(path, lines)
        secrets = spec.secret_values()
        return {name: scrub(text, secrets) for name, text in out.items()}

    def forget(self) -> None:
        """Drop the cached measurements: the next ``measure`` runs again (soak loops)."""
        self._cache.clear()

    def close(self, keep: bool = False) -> None:
        """Tear the current cluster down; with ``keep``, leave it running and say how to reach
        it and how to tear it down later."""
        if self.current is not None:
            current, self.current = self.current, None
            if keep:
                self.kept.append(current)
                current.detach()
                return
            try:
                self.hooks.cluster_down(current)
            except Exception as exc:  # reported; the teardown goes on
                self.say(f"{current.spec.label}: the cluster-down hook failed: {type(exc).__name__}: {exc}")
            current.down()
            self.say(f"{current.spec.label}: torn down")

    # ------------------------------------------------------------------ internals

    def up(self, spec: ClusterSpec) -> Topology:
        """``spec``'s cluster, up (brought up now unless it is the current one; the previous one
        is torn down first)."""
        broken = self._broken.get(spec.label)
        if broken is not None:
            raise BringUpError(
                f"cluster {spec.label} failed earlier in this session; not retrying. First failure: {broken}",
                failure=broken.failure,
            )
        if self.current is not None and self.current.spec.label == spec.label:
            return self.current
        if self.kept:
            raise BringUpError(
                f"not bringing up {spec.label}: {self.kept[0].spec.label} was left running for "
                "debugging (--pd-keep-cluster-on-failure) and may share its hosts, ports and GPUs. "
                f"Tear it down (`pytest-pd down {self.kept[0].run_dir}`) before the next session."
            )
        self.close()  # never two clusters at once: they may share hosts, GPUs and ports
        topology = Topology(
            spec, new_run_dir(self.run_base, spec.label), say=self.say, keep_on_failure=self.keep_on_failure
        )
        try:
            topology.up()
            self._cluster_up(topology)
        except PdError as exc:
            self._broken[spec.label] = self._failure(spec, "bring-up", exc, topology.run_dir)
            if topology.keep_on_failure and topology.run_dir.joinpath(STATE_FILE).exists():
                self.kept.append(topology)  # detached, not torn down
            raise
        self.current = topology
        return topology

    def _cluster_up(self, topology: Topology) -> None:
        try:
            self.hooks.cluster_up(topology)
        except Exception as exc:
            topology.down()
            raise BringUpError(
                f"{topology.spec.label} came up, but the pytest_pd_cluster_up hook failed: "
                f"{type(exc).__name__}: {exc}. The cluster was torn down; fix the hook (or what it "
                "checks) and run again."
            ) from exc

    def _failure(self, spec: ClusterSpec, stage: str, exc: E, run_dir: Path) -> E:
        """Note a failed bring-up or run: ``exc`` gets a :class:`Failure` (what the results
        store, the terminal and the report say of it: stage, cause, logs) and is returned."""
        secrets = spec.secret_values()
        tails = {path.stem: scrub(tail_file(path, 30), secrets) for path in log_files(run_dir)}
        if isinstance(exc, PdError):  # its message is what pytest shows: log tails scrubbed too
            exc.args = tuple(scrub(str(a), secrets) for a in exc.args)
        failure = Failure(
            cluster=spec.label,
            stage=stage,
            kind=type(exc).__name__,
            message=str(exc) or repr(exc),
            run_dir=str(run_dir),
            at=time.time(),
            logs=tails,
        )
        exc.failure = failure  # type: ignore[attr-defined]  # PdError has it; others get it here
        self.failures.append(failure)
        return exc

    def _store_failure(self, exc: BaseException, workloads: Sequence[Workload]) -> None:
        """One results file per workload that did not get measured, holding the failure."""
        failure: Failure | None = getattr(exc, "failure", None)
        if failure is None or self.results_dir is None:
            return
        spec = self.spec(failure.cluster)
        for w in workloads:
            if w.id in failure.recorded:
                continue
            record = RunRecord(
                **self._context(spec, failure.at, Path(failure.run_dir or "")), workload=w, failure=failure
            )
            failure.recorded[w.id] = str(self._save(record))

    def _tokenizer(self, spec: ClusterSpec) -> Any:
        path = spec.tokenizer_path
        if path not in self._tokenizers:
            self._tokenizers[path] = load_tokenizer(path)
        return self._tokenizers[path]

    def _prompts_for(self, spec: ClusterSpec, workload: Workload) -> list[Prompt]:
        """The workload's prompts, once per tokenizer; a workload of an API the cluster's engine
        lacks fails here, before any bring-up."""
        apis = engines.engine_of(spec).apis
        if workload.api not in apis:
            raise PdError(
                f"{spec.label}: engine {spec.engine} serves no {workload.api!r} API (it serves "
                f"{', '.join(apis)}); give the suite's Workload api={apis[0]!r} "
                "(with completions_prompt='ids' for exact lengths with any tokenizer)."
            )
        key = (spec.tokenizer_path, workload.id)
        if key not in self._prompts:
            self._prompts[key] = build_prompts(self._tokenizer(spec), workload)
        return self._prompts[key]

    def _run(self, spec: ClusterSpec, topology: Topology, workload: Workload) -> RunRecord:
        spec = topology.spec  # with the addresses its launcher placed the hosts at (Slurm's nodes)
        prompts = self._prompts_for(spec, workload)
        speedup = engines.time_scale(spec)
        # Open-loop schedules and time limits too: the simulated cluster runs `speedup` times faster
        run_as = (
            dataclasses.replace(
                workload,
                request_rate=workload.request_rate * speedup,
                duration_limit_s=workload.duration_limit_s / speedup,
                trace_time_scale=workload.trace_time_scale * speedup,
                think_time_s=workload.think_time_s / speedup,
                request_timeout_s=workload.request_timeout_s / speedup,
            )
            if speedup != 1.0
            else workload
        )
        # SLOs are in the real cluster's time; a simulated run is measured `speedup` times faster
        slo = {k: v / speedup for k, v in self.slo.items()}
        self.say(
            f"{spec.label}: running {workload.id} against {topology.router_url}"
            + (f" ({self.repeats} repeats)" if self.repeats > 1 else "")
        )
        secrets = spec.secret_values()
        sampler = cluster_sampler(spec, topology, self.telemetry_interval_s).start()
        started = time.time()
        results: list[RunResult] = []
        summaries: list[RunSummary] = []
        dead: list[str] = []
        # one client process stops at once; several finish their requests first
        then = "stopping the run" if run_as.client_processes <= 1 else "the run ends with its requests"
        watchdog = DeathWatch(topology, lambda why: self.say(f"{spec.label}: {why}; {then}")).start()
        watchdog.stop_servers = not self.keep_on_failure
        try:
            for _ in range(self.repeats):
                result = run_workload_sync(  # the tokenizer counts tokens per chunk where the API does not
                    topology.router_url,
                    run_as,
                    prompts,
                    abort=watchdog.reason,
                    tokenizer=self._tokenizer(spec),
                    after_warmup=lambda: flush_caches(spec, topology, self.say),
                )
                results.append(result)
                summary = summarize(result, slo=slo or None)
                summaries.append(
                    dataclasses.replace(
                        summary,
                        error_examples={  # as shown
                            k: scrub(v, secrets) for k, v in summary.error_examples.items()
                        },
                    )
                )
                dead = watchdog.final_check(failed=bool(summary.failed))
                if dead:
                    break
        finally:
            watchdog.stop()
            telemetry = sampler.stop()
        finished = time.time()
        facts = {} if dead else server_info(spec, topology)
        context = self._context(spec, started, topology.run_dir)
        context["environment"] = context["environment"].model_copy(
            update={"engines": engine_versions(spec.engine, facts), "gpus": gpu_inventory(telemetry)}
        )
        record = build_record(
            **context,
            workload=workload,
            summaries=summaries,
            runs=[r.to_dict() for r in results],
            speedup=speedup,
            simulated=engines.engine_of(spec).simulated,
            slo=self.slo,
            finished_at=finished,
            server_info=facts,
            telemetry=telemetry,
        )
        if dead:  # a process died: the cluster is gone for the rest of the session
            raise self._lost_process(spec, topology, record, dead, repeat=len(results))
        if spec.twin is not None:
            record.prediction = prediction_of(record, spec.resolve_path(spec.twin.profile))
        self._save(record)
        shown = record.metrics
        scaled = f" (simulated ×{speedup:g}, scaled back)" if speedup != 1.0 else ""
        self.say(
            f"{spec.label}: {workload.id}: {shown['completed']} completed, {shown['failed']} "
            f"failed, TTFT {shown['mean_ttft_ms']:.1f} ms, TPOT {shown['mean_tpot_ms']:.2f} ms, "
            f"{shown['output_throughput']:.1f} tok/s{scaled}"
        )
        return record

    def _lost_process(
        self, spec: ClusterSpec, topology: Topology, record: RunRecord, dead: list[str], repeat: int
    ) -> PdError:
        """A process died while ``record`` was measured: the record is stored with the cause,
        the cluster counts as broken for the rest of the session and is torn down (or kept);
        returns the error to raise."""
        lost = self._failure(
            spec,
            "run",
            BringUpError(
                f"cluster {spec.label} lost a process while running {record.workload.id}"
                + (f" (repeat {repeat})" if self.repeats > 1 else "")
                + ":\n"
                + "\n".join(dead)
            ),
            topology.run_dir,
        )
        self._broken[spec.label] = lost
        failure = record.failure = lost.failure
        path = self._save(record)  # the requests' records are kept, with the cause
        if path is not None and failure is not None:
            failure.recorded[record.workload.id] = str(path)
        try:
            self.close(keep=self.keep_on_failure)
        except HostError as exc:  # the cause stays the lost process; teardown's trouble too
            return BringUpError(f"{lost}\nTeardown: {exc}", failure=failure)
        return lost

    def _save(self, record: RunRecord) -> Path | None:
        """Store ``record`` (when there is a store), after the hooks that may change it."""
        self.hooks.record(record)
        if self.results_dir is None:
            return None
        path = save_result(self.results_dir, record, with_requests=self.store_requests)
        self.hooks.saved(record, path)
        return path

    def _context(self, spec: ClusterSpec, started: float, run_dir: Path) -> dict[str, Any]:
        """The fields every record of ``spec`` holds, measured or failed."""
        return run_context(
            spec, started, run_dir, env=self.env, session=self.session, baseline_mark=self.save_baseline
        )
