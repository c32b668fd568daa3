"""One workload measured on one cluster (its repeats, their median, where its results went), and
the seed table's "prefill strategy" of a cluster."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_pd.cluster import engines
from pytest_pd.cluster.spec import ClusterSpec
from pytest_pd.judge.catalog import to_model_time
from pytest_pd.workload.metrics import RunSummary
from pytest_pd.workload.runner import RunResult
from pytest_pd.workload.spec import Workload


@dataclass
class Measurement:
    """One workload on one cluster: ``repeats`` runs in one bring-up; ``summary`` is their
    median (``aggregate_repeats``), ``summaries``/``results`` the runs one by one."""

    cluster: ClusterSpec
    workload: Workload
    summary: RunSummary
    started_at: float
    finished_at: float
    run_dir: Path
    result_path: Path | None = None
    server_info: dict[str, Any] = field(default_factory=dict)
    summaries: list[RunSummary] = field(default_factory=list)
    results: list[RunResult] = field(default_factory=list)
    telemetry: dict[str, Any] | None = None
    slo: dict[str, float] = field(default_factory=dict)
    payload: dict[str, Any] = field(default_factory=dict)  # what the results file holds

    @property
    def speedup(self) -> float:
        return engines.time_scale(self.cluster)

    @property
    def metrics(self) -> dict[str, Any]:
        """The run's metrics in the time of the cluster it stands for (simulated runs scaled back
        by their speedup); what reports show and bounds judge."""
        return self.in_model_time(self.summary.to_dict())

    @property
    def samples(self) -> dict[str, list[float]]:
        """Per-repeat values of every numeric metric (model time); empty for a single run."""
        if len(self.summaries) < 2:
            return {}
        return repeat_samples([self.in_model_time(s.to_dict()) for s in self.summaries])

    def in_model_time(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """A summary's dict scaled back to the simulated cluster's time, with the SLOs it was
        judged against (given in that time)."""
        out = to_model_time(metrics, self.speedup)
        if self.slo:
            out["slo"] = dict(self.slo)
        return out


def repeat_samples(per_repeat: Sequence[Mapping[str, Any]]) -> dict[str, list[float]]:
    """{metric: [value of repeat 1, 2, …]} for the numeric metrics of per-repeat summaries."""
    if len(per_repeat) < 2:
        return {}
    out: dict[str, list[float]] = {}
    for key, value in per_repeat[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            vals = [r.get(key) for r in per_repeat]
            out[key] = [float("nan") if v is None else float(v) for v in vals]
    return out


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
