"""SGLang's Prometheus metrics (``--enable-metrics``; the simulator exports the same names) read
into pytest-pd's engine-neutral terms: the TTFT breakdown's server times and the prefix cache's hit
rate, from :func:`pytest_pd.prometheus.server_summary` rows (each worker's change over a run).

- queueing: ``sglang:queue_time_seconds`` of the prefill (or unified) servers, plus on a PD
  prefill the bootstrap queue (``sglang:per_stage_req_latency_seconds{stage="prefill_bootstrap"}``:
  waiting for the decode's handshake), when exported;
- prefill: ``{stage="prefill_forward"}``;
- KV transfer: ``{stage="prefill_transfer_kv_cache"}`` of the prefill servers, else
  ``sglang:kv_transfer_latency_ms``;
- the server's TTFT: ``sglang:time_to_first_token_seconds`` of the decode (or unified) servers;
- prefix cache: ``sglang:prefill_effective_tokens_total`` modes ``device_hit``, ``host_hit`` and
  ``storage_hit`` against ``input``.
"""

from __future__ import annotations

from collections.abc import Mapping

from pytest_pd.prometheus import series_labels, series_total
from pytest_pd.ttft_breakdown import ServerTimes

Rows = Mapping[str, Mapping[str, float]]
PREFILL_SIDE = ("prefill", "unified")
DECODE_SIDE = ("decode", "unified")
_STAGE = "sglang:per_stage_req_latency_seconds"
_QUEUE = "sglang:queue_time_seconds"
_KV_MS = "sglang:kv_transfer_latency_ms"
_TTFT = "sglang:time_to_first_token_seconds"
_EFFECTIVE = "sglang:prefill_effective_tokens_total"

GAUGES = {"running": "sglang:num_running_reqs", "queued": "sglang:num_queue_reqs"}
"""The gauges the report charts over a run, per worker (what it counts → sample name)."""


def _mean(rows: Rows, family: str, engines: tuple[str, ...], **labels: str) -> float | None:
    """Σ sum / Σ count of histogram ``family`` over every worker's series whose ``engine_type``
    is one of ``engines`` and whose labels include ``labels``; None without observations."""
    count = series_total(rows, family + "_count", engines, **labels)
    return series_total(rows, family + "_sum", engines, **labels) / count if count > 0 else None


def server_times(rows: Rows) -> ServerTimes | None:
    if not rows:
        return None
    kinds = {series_labels(k).get("engine_type") for row in rows.values() for k in row}
    unified = "unified" in kinds and "prefill" not in kinds
    queue = _mean(rows, _QUEUE, PREFILL_SIDE)
    bootstrap = _mean(rows, _STAGE, ("prefill",), stage="prefill_bootstrap") or 0.0
    prefill = _mean(rows, _STAGE, PREFILL_SIDE, stage="prefill_forward")
    kv: float | None = 0.0
    if not unified:
        kv = _mean(rows, _STAGE, ("prefill",), stage="prefill_transfer_kv_cache")
        if kv is None:
            ms = _mean(rows, _KV_MS, ("prefill",))
            kv = None if ms is None else ms / 1000.0
    times = {"queueing": None if queue is None else queue + bootstrap, "prefill": prefill, "kv_transfer": kv}
    families = {
        "queueing": _QUEUE,
        "prefill": f'{_STAGE}{{stage="prefill_forward"}}',
        "kv_transfer": f'{_STAGE}{{stage="prefill_transfer_kv_cache"}} / {_KV_MS}',
    }
    missing = {
        name: f"the prefill servers export no {families[name]} observations"
        for name, value in times.items()
        if value is None
    }
    server_ttft = _mean(rows, _TTFT, DECODE_SIDE)
    if server_ttft is None:
        missing["server_ttft"] = f"the decode servers export no {_TTFT} observations"
    return ServerTimes(**times, server_ttft=server_ttft, missing=missing, unified=unified)


def prefix_cache_hit_rate(rows: Rows) -> float | None:
    """The share of the prompt tokens the prefill (or unified) servers found in their prefix
    cache over the run; None when they do not export it."""
    hits = sum(
        series_total(rows, _EFFECTIVE, PREFILL_SIDE, mode=m)
        for m in ("device_hit", "host_hit", "storage_hit")
    )
    total = hits + series_total(rows, _EFFECTIVE, PREFILL_SIDE, mode="input")
    return hits / total if total > 0 else None
