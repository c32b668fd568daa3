"""Chart series from run records: per-request times, token rates, telemetry. Pure.

Per-request series read ``RunRecord.runs()`` (each repeat's ``RunResult.to_dict()``, perf_counter
times). Times come out in seconds of the cluster the run stands for (simulated runs × their
speedup), from the run's first send.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pytest_pd.record import RunRecord


def _ok(rec: Mapping[str, Any]) -> bool:
    return (
        rec.get("error_kind") is None
        and rec.get("t_start") is not None
        and rec.get("t_first_token") is not None
        and rec.get("t_end") is not None
    )


def latencies(record: RunRecord) -> tuple[list[float], list[float]]:
    """(TTFT s, E2E latency s) of every completed request, all repeats pooled."""
    k = record.speedup
    ttft, e2e = [], []
    for run in record.runs():
        for rec in run.get("records", []):
            if _ok(rec):
                ttft.append((rec["t_first_token"] - rec["t_start"]) * k)
                e2e.append((rec["t_end"] - rec["t_start"]) * k)
    return ttft, e2e


def _t0(run: Mapping[str, Any]) -> float:
    starts = [r["t_start"] for r in run.get("records", []) if r.get("t_start") is not None]
    started = run.get("started")
    if isinstance(started, (int, float)) and math.isfinite(started):
        return float(started)
    return min(starts) if starts else 0.0


def timeline(record: RunRecord) -> list[tuple[float, float | None, float | None]]:
    """(send, first token, last token) per request of the first repeat, in request order."""
    runs = record.runs()
    if not runs:
        return []
    run, k = runs[0], record.speedup
    t0 = _t0(run)
    out = []
    for rec in sorted(run.get("records", []), key=lambda r: r.get("index", 0)):
        if rec.get("t_start") is None:
            continue

        def rel(t: float | None) -> float | None:
            return None if t is None else (t - t0) * k

        out.append(
            (
                (rec["t_start"] - t0) * k,
                rel(rec.get("t_first_token")),
                rel(rec.get("t_end")) if rec.get("error_kind") is None else None,
            )
        )
    return out


def _chunk_counts(rec: Mapping[str, Any]) -> list[int]:
    times, tokens = rec.get("chunk_times") or [], rec.get("chunk_tokens") or []
    if not times:
        return []
    if len(tokens) == len(times):
        return [b - a for a, b in zip([0, *tokens[:-1]], tokens, strict=True)]
    counts = [1] * len(times)
    counts[-1] += max(0, (rec.get("completion_tokens") or 0) - len(times))
    return counts


def bucket_for(duration_s: float) -> float:
    """1 s buckets, finer for runs shorter than 30 s (at least 30 buckets)."""
    if not (duration_s > 0) or duration_s >= 30:
        return 1.0
    return max(duration_s / 30.0, 1e-3)


def output_rate(record: RunRecord, bucket_s: float | None = None) -> list[tuple[float, float]]:
    """Output tokens/s received, per bucket, over the first repeat: [(bucket start, rate)]."""
    runs = record.runs()
    if not runs:
        return []
    run, k = runs[0], record.speedup
    t0 = _t0(run)
    events: list[tuple[float, int]] = []
    for rec in run.get("records", []):
        if rec.get("error_kind") is not None:
            continue
        events += [
            ((t - t0) * k, n) for t, n in zip(rec.get("chunk_times") or [], _chunk_counts(rec), strict=False)
        ]
    if not events:
        return []
    end = max(t for t, _ in events)
    size = bucket_s or bucket_for(end)
    buckets = [0.0] * (int(end // size) + 1)
    for t, n in events:
        buckets[max(0, int(t // size))] += n
    return [(i * size, total / size) for i, total in enumerate(buckets)]


def server_gauges(telemetry: Mapping[str, Any] | None) -> dict[str, list[tuple[float, float]]]:
    """{"decode-0 running": [(t, value)], …} of the gauges the engine named (running and queued
    requests) from the sampled /metrics (seconds since the measurement started, in the time of
    the cluster the run stands for)."""
    out: dict[str, list[tuple[float, float]]] = {}
    k = float((telemetry or {}).get("time_scale") or 1.0)
    gauges = (telemetry or {}).get("gauges") or {}
    for worker, entry in ((telemetry or {}).get("server") or {}).items():
        for what, name in gauges.items():
            points = [
                (s["t"] * k, v)
                for s in entry.get("samples", [])
                for key, v in s["values"].items()
                if key.split("{", 1)[0] == name
            ]
            if points:
                out[f"{worker} {what}"] = points
    return out


def gpu_series(
    telemetry: Mapping[str, Any] | None, field: str = "utilization_pct"
) -> dict[str, list[tuple[float, float]]]:
    """{"host gpu0": [(t, value)]} for one nvidia-smi field."""
    out: dict[str, list[tuple[float, float]]] = {}
    for host, entry in ((telemetry or {}).get("gpu") or {}).items():
        for sample in entry.get("samples", []):
            for gpu, values in sample["gpus"].items():
                value = values.get(field)
                if value is not None:
                    out.setdefault(f"{host} gpu{gpu}", []).append((sample["t"], value))
    return out
