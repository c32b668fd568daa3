"""Run records for tests that judge or render without measuring."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pytest_pd.record import ClusterInfo, RunRecord, Simulated
from pytest_pd.workload.spec import Workload


def run_record(
    name: str,
    prefill_strategy: str,
    metrics: Mapping[str, Any],
    *,
    samples: Mapping[str, list[float]] | None = None,
    speedup: float | None = None,
    **fields: Any,
) -> RunRecord:
    """A record of cluster ``name`` with ``metrics``; ``samples`` become its repeats (one
    summary per repeat holding those metrics); ``speedup``: a simulated run."""
    n = max((len(v) for v in (samples or {}).values()), default=0)
    repeats = [{**metrics, **{k: v[i] for k, v in (samples or {}).items()}} for i in range(n)]
    return RunRecord(
        cluster=ClusterInfo(name=name, prefill_strategy=prefill_strategy),
        workload=fields.pop("workload", Workload()),
        metrics=dict(metrics),
        repeats=repeats,
        simulated=Simulated(speedup=speedup) if speedup is not None else None,
        **fields,
    )
