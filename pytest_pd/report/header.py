"""The report's header: which cluster against which baseline, model, versions, commit, date,
simulated or real hardware, harness host; as data, then as escaped HTML."""

from __future__ import annotations

import time
from collections.abc import Mapping
from html import escape
from typing import Any

from pytest_pd.judge.comparison import Comparison


def report_header(comp: Comparison) -> dict[str, Any]:
    """The report's header: cluster, baseline, model, versions, commit, date, hardware, host."""
    run = comp.candidate
    env = run.environment
    router = run.cluster.router_kind or "sglang-router"
    hardware = (
        f"simulated (sim workers ×{run.speedup:g} faster than real time, behind the real "
        f"{router}; numbers scaled back to real time)"
        if run.simulated
        else "real hardware"
    )
    baseline = f"{comp.baseline.name}: {comp.baseline_source}" if comp.baseline is not None else "none"
    return {
        "cluster": f"{run.name} ({run.cluster.file or ''})",
        "baseline": baseline,
        "model": run.model.name,
        "versions": {
            "pytest-pd": env.pytest_pd,
            "Python": env.python,
            f"router ({router}, harness)": env.router,
            "engine (as its servers report)": ", ".join(sorted(set(env.engines.values()))) or None,
        },
        "commit": env.git_commit or "unknown",
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(run.started_at))
        if run.started_at
        else None,
        "hardware": hardware,
        "host": env.harness_host,
    }


def header_section(header: Mapping[str, Any]) -> str:
    items = [
        (k, header[k])
        for k in ("cluster", "baseline", "model", "versions", "commit", "date", "hardware", "host")
        if header.get(k) not in (None, "", {})
    ]
    body = "".join(f"<dt>{escape(k)}</dt><dd>{escape(_flat(v))}</dd>" for k, v in items)
    return f'<dl class="pd-header">{body}</dl>'


def _flat(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {_flat(v)}" for k, v in value.items() if v not in (None, "", {}))
    return str(value)
