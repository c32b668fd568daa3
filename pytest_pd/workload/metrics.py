"""Records -> RunSummary, with SGLang bench_serving's definitions and JSON key names.

Pure: no I/O, no clocks. Failed requests are excluded from every latency statistic (they never
contribute a TTFT of 0); statistics over no values are NaN, never 0.

- TTFT = first output-bearing chunk - request start (start is after the concurrency slot).
- E2E latency = last line of the stream - request start.
- TPOT = (latency - TTFT) / (completion_tokens - 1), for completion_tokens > 1.
- ITL = gap between successive output-bearing chunks divided by the chunk's new tokens, repeated
  once per new token, pooled over requests (one value per gap when per-chunk counts are unknown).
- Throughputs over duration = last completion - first dispatch (measured requests only).
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .client import RequestRecord
    from .runner import RunResult

NAN = math.nan


@dataclass(frozen=True)
class RunSummary:
    """bench_serving-compatible summary of one run (times in ms, throughputs per second)."""

    duration: float
    completed: int
    failed: int
    total_input_tokens: int
    total_output_tokens: int
    request_throughput: float
    input_throughput: float
    output_throughput: float
    total_throughput: float
    mean_ttft_ms: float
    median_ttft_ms: float
    std_ttft_ms: float
    p90_ttft_ms: float
    p99_ttft_ms: float
    mean_tpot_ms: float
    median_tpot_ms: float
    std_tpot_ms: float
    p90_tpot_ms: float
    p99_tpot_ms: float
    mean_itl_ms: float
    median_itl_ms: float
    std_itl_ms: float
    p90_itl_ms: float
    p95_itl_ms: float
    p99_itl_ms: float
    max_itl_ms: float
    mean_e2e_latency_ms: float
    median_e2e_latency_ms: float
    std_e2e_latency_ms: float
    p90_e2e_latency_ms: float
    p99_e2e_latency_ms: float
    concurrency: float
    max_concurrency: int
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    output_len_mismatches: int = 0
    mean_queue_ms: float = NAN

    def to_dict(self) -> dict[str, Any]:
        """Plain dict keyed like bench_serving's JSON; statistics without data stay NaN."""
        return dataclasses.asdict(self)

    def to_json_dict(self) -> dict[str, Any]:
        """Strict-JSON dict: NaN (no data) becomes ``None``; :meth:`from_dict` restores NaN."""
        return {k: (None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in self.to_dict().items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSummary:
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                continue
            v = data[f.name]
            kwargs[f.name] = NAN if v is None else v
        kwargs["errors_by_kind"] = dict(kwargs.get("errors_by_kind") or {})
        return cls(**kwargs)

    @property
    def all_failed(self) -> bool:
        return self.completed == 0


def _stats(values: np.ndarray, prefix: str, suffix: str, percentiles: Iterable[int],
           with_max: bool = False) -> dict[str, float]:
    """mean/median/std/pN(/max) in ms of values given in seconds; NaN for no values."""
    arr = np.asarray(values, dtype=float)
    pcts = list(percentiles)
    keys = [f"mean_{prefix}_{suffix}", f"median_{prefix}_{suffix}", f"std_{prefix}_{suffix}"]
    keys += [f"p{p}_{prefix}_{suffix}" for p in pcts]
    if with_max:
        keys.append(f"max_{prefix}_{suffix}")
    if arr.size == 0:
        return dict.fromkeys(keys, NAN)
    ms = arr * 1000.0
    out = [float(np.mean(ms)), float(np.median(ms)), float(np.std(ms))]
    out += [float(v) for v in np.percentile(ms, pcts)]
    if with_max:
        out.append(float(np.max(ms)))
    return dict(zip(keys, out, strict=True))


def request_itls(record: RequestRecord) -> np.ndarray:
    """Inter-token latencies (seconds) of one request, per bench_serving's /generate rule."""
    times = np.asarray(record.chunk_times, dtype=float)
    if times.size < 2:
        return np.empty(0)
    gaps = np.diff(times)
    if len(record.chunk_tokens) == times.size:
        new = np.diff(np.asarray(record.chunk_tokens, dtype=np.int64))
        keep = new > 0
        return np.repeat(gaps[keep] / new[keep], new[keep])
    return gaps


def _ok(records: Iterable[RequestRecord]) -> list[RequestRecord]:
    return [r for r in records
            if r.error_kind is None and r.t_start is not None and r.t_end is not None
            and r.t_first_token is not None]


def summarize(result: RunResult) -> RunSummary:
    """Summarize a run's measured records (warm-up excluded)."""
    records = list(result.records)
    ok = _ok(records)
    failed = len(records) - len(ok)
    ok_ids = {id(r) for r in ok}
    errors = Counter(r.error_kind or "unknown" for r in records if id(r) not in ok_ids)

    ttft = np.array([r.t_first_token - r.t_start for r in ok], dtype=float)
    e2e = np.array([r.t_end - r.t_start for r in ok], dtype=float)
    queue = np.array([r.t_start - r.t_queued for r in ok if r.t_queued is not None], dtype=float)
    out_tokens = np.array([r.completion_tokens or 0 for r in ok], dtype=np.int64)
    in_tokens = np.array([r.prompt_tokens if r.prompt_tokens is not None else r.prompt_len
                          for r in ok], dtype=np.int64)
    multi = out_tokens > 1
    tpot = (e2e[multi] - ttft[multi]) / (out_tokens[multi] - 1)
    itl = np.concatenate([request_itls(r) for r in ok]) if ok else np.empty(0)
    mismatches = int(sum(1 for r in ok if r.completion_tokens != r.expected_output_len))

    starts = [r.t_start for r in records if r.t_start is not None]
    ends = [r.t_end for r in records if r.t_end is not None]
    duration = float(max(ends) - min(starts)) if starts and ends else NAN
    if not (duration > 0):
        duration = NAN
    total_in = int(in_tokens.sum())
    total_out = int(out_tokens.sum())

    return RunSummary(
        duration=duration,
        completed=len(ok),
        failed=failed,
        total_input_tokens=total_in,
        total_output_tokens=total_out,
        request_throughput=len(ok) / duration,
        input_throughput=total_in / duration,
        output_throughput=total_out / duration,
        total_throughput=(total_in + total_out) / duration,
        **_stats(ttft, "ttft", "ms", (90, 99)),
        **_stats(tpot, "tpot", "ms", (90, 99)),
        **_stats(itl, "itl", "ms", (90, 95, 99), with_max=True),
        **_stats(e2e, "e2e_latency", "ms", (90, 99)),
        concurrency=float(e2e.sum()) / duration,
        max_concurrency=int(result.workload.concurrency),
        errors_by_kind=dict(sorted(errors.items())),
        output_len_mismatches=mismatches,
        mean_queue_ms=float(np.mean(queue) * 1000.0) if queue.size else NAN,
    )


def request_table(result: RunResult) -> list[dict[str, Any]]:
    """One row per measured request, times relative to ``result.started`` (for charts/reports)."""
    t0 = result.started
    rows = []
    for r in result.records:
        ok = r.error_kind is None and r.t_first_token is not None and r.t_start is not None
        ct = r.completion_tokens or 0
        ttft = (r.t_first_token - r.t_start) if ok else None
        e2e = (r.t_end - r.t_start) if ok and r.t_end is not None else None
        tpot = ((e2e - ttft) / (ct - 1)) if e2e is not None and ttft is not None and ct > 1 \
            else None
        rows.append({
            "index": r.index,
            "ok": ok,
            "error_kind": r.error_kind,
            "status": r.status,
            "prompt_len": r.prompt_len,
            "completion_tokens": r.completion_tokens,
            "queue_ms": None if r.t_start is None or r.t_queued is None
            else (r.t_start - r.t_queued) * 1000.0,
            "start_s": None if r.t_start is None else r.t_start - t0,
            "end_s": None if r.t_end is None else r.t_end - t0,
            "ttft_ms": None if ttft is None else ttft * 1000.0,
            "tpot_ms": None if tpot is None else tpot * 1000.0,
            "e2e_latency_ms": None if e2e is None else e2e * 1000.0,
        })
    return rows
