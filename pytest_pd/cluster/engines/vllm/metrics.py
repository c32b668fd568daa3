"""vLLM's Prometheus metrics (``vllm:*``, labels ``engine`` and ``model_name``) read into
pytest-pd's engine-neutral terms, from :func:`pytest_pd.prometheus.server_summary` rows keyed by
process name (``prefill-0``, ``decode-0``: vLLM's metrics carry no role label).

With vLLM's two-stage PD (the router sends the prompt to a prefill server with ``max_tokens: 1``,
then to a decode server, which pulls the KV cache), a request's time to its first token on the
servers is the prefill request's whole latency plus the decode server's own TTFT:

- queueing: the prefill servers' ``vllm:request_queue_time_seconds``;
- prefill: their ``vllm:request_prefill_time_seconds``;
- KV transfer: the decode servers' ``vllm:nixl_xfer_time_seconds`` (NIXL's transfers);
- the servers' TTFT: the prefill's ``vllm:e2e_request_latency_seconds`` plus the decode's
  ``vllm:time_to_first_token_seconds`` (its queue, the KV pull and its first step);
- prefix cache: the prefill servers' ``vllm:prefix_cache_hits_total`` over
  ``vllm:prefix_cache_queries_total`` (tokens).
"""

from __future__ import annotations

from collections.abc import Mapping

from pytest_pd.ttft_breakdown import ServerTimes

Rows = Mapping[str, Mapping[str, float]]
GAUGES = {"running": "vllm:num_requests_running", "queued": "vllm:num_requests_waiting"}
_QUEUE = "vllm:request_queue_time_seconds"
_PREFILL = "vllm:request_prefill_time_seconds"
_E2E = "vllm:e2e_request_latency_seconds"
_TTFT = "vllm:time_to_first_token_seconds"
_NIXL = "vllm:nixl_xfer_time_seconds"
_CACHE_QUERIES = "vllm:prefix_cache_queries_total"
_CACHE_HITS = "vllm:prefix_cache_hits_total"
READ = {"prefill": (_QUEUE, _PREFILL, _E2E, _CACHE_QUERIES, _CACHE_HITS), "decode": (_TTFT, _NIXL)}
"""The families read from each role's servers (besides the gauges, read from both)."""


def _total(rows: Rows, role: str, name: str) -> float:
    """The sum of sample ``name`` (any labels) over the servers of ``role``."""
    return sum(
        value
        for process, row in rows.items()
        if process.split("-", 1)[0] == role
        for key, value in row.items()
        if key.partition("{")[0] == name
    )


def _mean(rows: Rows, role: str, family: str) -> float | None:
    count = _total(rows, role, family + "_count")
    return _total(rows, role, family + "_sum") / count if count > 0 else None


def server_times(rows: Rows) -> ServerTimes | None:
    if not rows:
        return None
    times = {
        "queueing": _mean(rows, "prefill", _QUEUE),
        "prefill": _mean(rows, "prefill", _PREFILL),
        "kv_transfer": _mean(rows, "decode", _NIXL),
    }
    families = {"queueing": f"prefill servers' {_QUEUE}", "prefill": f"prefill servers' {_PREFILL}"}
    families["kv_transfer"] = f"decode servers' {_NIXL}"
    missing = {name: f"no {families[name]} observations" for name, value in times.items() if value is None}
    prefill_e2e, decode_ttft = _mean(rows, "prefill", _E2E), _mean(rows, "decode", _TTFT)
    server_ttft = None if prefill_e2e is None or decode_ttft is None else prefill_e2e + decode_ttft
    if server_ttft is None:
        missing["server_ttft"] = f"no prefill {_E2E} or decode {_TTFT} observations"
    return ServerTimes(**times, server_ttft=server_ttft, missing=missing, unified=False)  # PD only


def prefix_cache_hit_rate(rows: Rows) -> float | None:
    queries = _total(rows, "prefill", _CACHE_QUERIES)
    hits = _total(rows, "prefill", _CACHE_HITS)
    return hits / queries if queries > 0 else None
