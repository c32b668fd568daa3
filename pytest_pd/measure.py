"""Measurements: bring clusters up one at a time, run workloads through their routers, store results.

Knows nothing of pytest: the fixtures and the CLI both drive it.
"""

from __future__ import annotations

import json
import platform
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from pytest_pd import __version__
from pytest_pd.cluster.commands import render_commands
from pytest_pd.cluster.spec import ClusterSpec, load_cluster
from pytest_pd.cluster.topology import Topology
from pytest_pd.errors import BringUpError, PdError
from pytest_pd.results import save_result
from pytest_pd.rundir import new_run_dir
from pytest_pd.workload.metrics import RunSummary, summarize
from pytest_pd.workload.prompts import Prompt, Workload, build_prompts, load_tokenizer
from pytest_pd.workload.runner import RunResult, run_workload_sync

Say = Callable[[str], None]


@dataclass
class Measurement:
    cluster: ClusterSpec
    workload: Workload
    summary: RunSummary
    result: RunResult
    started_at: float
    finished_at: float
    run_dir: Path
    result_path: Path | None = None
    server_info: dict[str, Any] = field(default_factory=dict)


def prefill_strategy(spec: ClusterSpec) -> str:
    """The seed table's "prefill strategy" column, e.g. 'TP=4, PP=2'."""
    server = spec.servers("prefill")[0]
    parts = [f"TP={server.tp or 1}"]
    if (server.pp or 1) > 1:
        parts.append(f"PP={server.pp}")
    if (server.dp or 1) > 1:
        parts.append(f"DP={server.dp}")
    text = ", ".join(parts)
    n_p, n_d = len(spec.prefill), len(spec.decode)
    return text if (n_p, n_d) == (1, 1) else f"{text} ({n_p}P{n_d}D)"


def _get_json(url: str, timeout: float = 5.0) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (cluster URLs)
            return json.loads(resp.read())
    except (OSError, ValueError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def _git_commit(cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def environment(cwd: Path) -> dict[str, Any]:
    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    return {
        "pytest_pd": __version__,
        "python": platform.python_version(),
        "sglang_router": version("sglang-router"),
        "harness_host": socket.gethostname(),
        "git_commit": _git_commit(cwd),
    }


class Measurer:
    """Keeps at most one cluster up; measures each (cluster, workload) once and caches it."""

    def __init__(self, cluster_dir: Path, run_base: Path, results_dir: Path | None, *,
                 say: Say = print, workdir: Path | None = None) -> None:
        self.cluster_dir = cluster_dir
        self.run_base = run_base
        self.results_dir = results_dir
        self.say = say
        self.workdir = workdir or Path.cwd()
        self.current: Topology | None = None
        self._specs: dict[str, ClusterSpec] = {}
        self._broken: dict[str, str] = {}
        self._cache: dict[tuple[str, str], Measurement] = {}
        self._tokenizers: dict[str, Any] = {}
        self._prompts: dict[tuple[str, str], list[Prompt]] = {}
        self.env = environment(self.workdir)

    def spec(self, name: str) -> ClusterSpec:
        if name not in self._specs:
            spec = load_cluster(name, self.cluster_dir)
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

    def cached(self, spec: ClusterSpec, workload: Workload) -> Measurement | None:
        return self._cache.get((spec.label, workload.id))

    def measure(self, spec: ClusterSpec, workload: Workload,
                also: Sequence[Workload] = ()) -> Measurement:
        """The measurement of ``workload`` on ``spec``; ``also`` are workloads to run in the same
        bring-up (so each cluster comes up once per session, not once per test)."""
        hit = self.cached(spec, workload)
        if hit is not None:
            return hit
        topology = self._up(spec)
        todo = [workload] + [w for w in also if w.id != workload.id and not self.cached(spec, w)]
        for w in todo:
            self._cache[(spec.label, w.id)] = self._run(spec, topology, w)
        return self._cache[(spec.label, workload.id)]

    def close(self) -> None:
        if self.current is not None:
            current, self.current = self.current, None
            current.down()
            self.say(f"{current.spec.label}: torn down")

    # ------------------------------------------------------------------ internals

    def _up(self, spec: ClusterSpec) -> Topology:
        if spec.label in self._broken:
            raise BringUpError(
                f"cluster {spec.label} failed earlier in this session; not retrying. First failure: "
                f"{self._broken[spec.label]}"
            )
        if self.current is not None and self.current.spec.label == spec.label:
            return self.current
        self.close()  # never two clusters at once: they may share hosts, GPUs and ports
        topology = Topology(spec, new_run_dir(self.run_base, spec.label), say=self.say)
        try:
            topology.up()
        except PdError as exc:
            self._broken[spec.label] = str(exc)
            raise
        self.current = topology
        return topology

    def _tokenizer(self, spec: ClusterSpec) -> Any:
        path = spec.tokenizer_path
        if path not in self._tokenizers:
            self._tokenizers[path] = load_tokenizer(path)
        return self._tokenizers[path]

    def _run(self, spec: ClusterSpec, topology: Topology, workload: Workload) -> Measurement:
        key = (spec.tokenizer_path, workload.id)
        if key not in self._prompts:
            self._prompts[key] = build_prompts(self._tokenizer(spec), workload)
        self.say(f"{spec.label}: running {workload.id} against {topology.router_url}")
        started = time.time()
        result = run_workload_sync(topology.router_url, workload, self._prompts[key])
        finished = time.time()
        dead = topology.dead() if topology.manages_processes else []
        if dead:
            self._broken[spec.label] = "; ".join(dead)
            self.close()
            raise BringUpError(
                f"cluster {spec.label} lost a process while running {workload.id}:\n"
                + "\n".join(dead)
            )
        summary = summarize(result)
        server_info = {
            cmd.name: _get_json(cmd.health_url.rsplit("/", 1)[0] + "/get_server_info")
            for cmd in topology.plan if cmd.role != "router" and cmd.health_url
        }
        m = Measurement(spec, workload, summary, result, started, finished, topology.run_dir,
                        server_info=server_info)
        if self.results_dir is not None:
            m.result_path = save_result(self.results_dir, self._payload(m, topology))
        self.say(f"{spec.label}: {workload.id}: {summary.completed} completed, {summary.failed} "
                 f"failed, TTFT {summary.mean_ttft_ms:.1f} ms, TPOT {summary.mean_tpot_ms:.2f} ms, "
                 f"{summary.output_throughput:.1f} tok/s")
        return m

    def _payload(self, m: Measurement, topology: Topology) -> dict[str, Any]:
        spec = m.cluster
        return {
            "cluster": {
                "name": spec.label,
                "file": str(spec.source),
                "engine": spec.engine,
                "launcher": spec.launcher,
                "baseline": spec.baseline,
                "prefill_strategy": prefill_strategy(spec),
                "spec": spec.model_dump(mode="json"),
                "commands": render_commands(spec, local_python=sys.executable),
                "router_url": topology.router_url,
            },
            "model": {"name": spec.model_name, "path": spec.model_path},
            "workload": {"id": m.workload.id, **m.workload.to_dict()},
            "metrics": m.summary.to_json_dict(),
            "started_at": m.started_at,
            "finished_at": m.finished_at,
            "run_dir": str(m.run_dir),
            "environment": self.env,
            "server_info": m.server_info,
        }
