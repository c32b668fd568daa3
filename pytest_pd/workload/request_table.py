"""One row per measured request (times relative to the run's start), for charts and reports."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .result import RunResult


def request_table(result: RunResult) -> list[dict[str, Any]]:
    """One row per measured request, times relative to ``result.started`` (for charts/reports)."""
    t0 = result.started
    rows = []
    for r in result.records:
        ok = r.error_kind is None and r.t_first_token is not None and r.t_start is not None
        ct = r.completion_tokens or 0
        ttft = e2e = None
        if ok and r.t_first_token is not None and r.t_start is not None:
            ttft = r.t_first_token - r.t_start
            e2e = (r.t_end - r.t_start) if r.t_end is not None else None
        tpot = ((e2e - ttft) / (ct - 1)) if e2e is not None and ttft is not None and ct > 1 else None
        rows.append(
            {
                "index": r.index,
                "ok": ok,
                "error_kind": r.error_kind,
                "status": r.status,
                "prompt_len": r.prompt_len,
                "prompt_tokens": r.prompt_tokens,
                "completion_tokens": r.completion_tokens,
                "expected_output_len": r.expected_output_len,
                "queue_ms": None
                if r.t_start is None or r.t_queued is None
                else (r.t_start - r.t_queued) * 1000.0,
                "start_s": None if r.t_start is None else r.t_start - t0,
                "end_s": None if r.t_end is None else r.t_end - t0,
                "ttft_ms": None if ttft is None else ttft * 1000.0,
                "tpot_ms": None if tpot is None else tpot * 1000.0,
                "e2e_latency_ms": None if e2e is None else e2e * 1000.0,
            }
        )
    return rows
