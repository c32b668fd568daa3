"""Where the time to first token goes: the client's mean TTFT split into client and router,
queueing, prefill, KV transfer and the decode side's hand-off and first step, from the servers'
own ``/metrics`` over the run (SGLang's names; the simulator exports the same). Pure.

The parts are means over the run's requests, each from the histogram of the server that measures
it (sum and count deltas between the first and last telemetry sample, so the warm-up request is
included):

- ``queueing``: ``sglang:queue_time_seconds`` of the prefill (or unified) servers: arrival in the
  scheduler's waiting queue to the first forward batch; on a PD prefill plus the bootstrap queue
  before it (``{stage="prefill_bootstrap"}``: waiting for the decode's handshake), when exported;
- ``prefill``: ``sglang:per_stage_req_latency_seconds{stage="prefill_forward"}``: first forward
  batch to the prefill's end (all chunks, the pipeline of a PP prefill included);
- ``kv_transfer``: ``{stage="prefill_transfer_kv_cache"}`` of the prefill servers, else
  ``sglang:kv_transfer_latency_ms``; none on a unified server;
- ``decode_first_step``: what is left of the decode (or unified) server's own TTFT
  (``sglang:time_to_first_token_seconds``) after the three parts above: the KV hand-off's
  bootstrap, the decode's queues and its first step;
- ``client_router``: the client's mean TTFT minus that server TTFT: the router, the network and
  the client (its own parsing included).

A part the servers do not export is ``None`` with the reason in ``missing``; the per-request split
is not possible from the client: the decode's ``meta_info`` carries only decode-side times.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pytest_pd.telemetry import series_labels, series_total

PARTS = ("client_router", "queueing", "prefill", "kv_transfer", "decode_first_step")
PART_TITLES = {
    "client_router": "client + router",
    "queueing": "queueing (prefill)",
    "prefill": "prefill compute",
    "kv_transfer": "KV transfer",
    "decode_first_step": "decode: hand-off + first step",
}
PREFILL_SIDE = ("prefill", "unified")
DECODE_SIDE = ("decode", "unified")
_STAGE = "sglang:per_stage_req_latency_seconds"


def _mean(
    rows: Mapping[str, Mapping[str, float]], family: str, engines: tuple[str, ...], **labels: str
) -> float | None:
    """Σ sum / Σ count of histogram ``family`` over every worker's series whose ``engine_type``
    is one of ``engines`` and whose labels include ``labels``; None without observations."""
    count = series_total(rows, family + "_count", engines, **labels)
    return series_total(rows, family + "_sum", engines, **labels) / count if count > 0 else None


def ttft_breakdown(
    rows: Mapping[str, Mapping[str, float]], client_ttft_s: float | None
) -> dict[str, Any] | None:
    """The breakdown of ``client_ttft_s`` (the run's mean TTFT, model seconds) from the servers'
    metrics over the run (``telemetry.server_summary`` rows); None without them or without a
    measured TTFT. ``parts``: name → seconds or None; ``missing``: name → why it could not be
    measured."""
    if not rows or client_ttft_s is None or client_ttft_s != client_ttft_s:
        return None
    engines = {series_labels(k).get("engine_type") for row in rows.values() for k in row}
    unified = "unified" in engines and "prefill" not in engines
    parts: dict[str, float | None] = dict.fromkeys(PARTS)
    missing: dict[str, str] = {}
    queue = _mean(rows, "sglang:queue_time_seconds", PREFILL_SIDE)
    bootstrap = _mean(rows, _STAGE, ("prefill",), stage="prefill_bootstrap") or 0.0
    parts["queueing"] = None if queue is None else queue + bootstrap
    parts["prefill"] = _mean(rows, _STAGE, PREFILL_SIDE, stage="prefill_forward")
    if unified:
        parts["kv_transfer"] = 0.0
    else:
        kv = _mean(rows, _STAGE, ("prefill",), stage="prefill_transfer_kv_cache")
        if kv is None:
            ms = _mean(rows, "sglang:kv_transfer_latency_ms", ("prefill",))
            kv = None if ms is None else ms / 1000.0
        parts["kv_transfer"] = kv
    server_ttft = _mean(rows, "sglang:time_to_first_token_seconds", DECODE_SIDE)
    for name, family in (
        ("queueing", "sglang:queue_time_seconds"),
        ("prefill", f'{_STAGE}{{stage="prefill_forward"}}'),
        ("kv_transfer", f'{_STAGE}{{stage="prefill_transfer_kv_cache"}} / sglang:kv_transfer_latency_ms'),
    ):
        if parts[name] is None:
            missing[name] = f"the prefill servers export no {family} observations"
    if server_ttft is None:
        why = "the decode servers export no sglang:time_to_first_token_seconds observations"
        missing["client_router"] = missing["decode_first_step"] = why
    else:
        parts["client_router"] = max(0.0, client_ttft_s - server_ttft)
        known = [parts[n] for n in ("queueing", "prefill", "kv_transfer")]
        if None in known:
            missing["decode_first_step"] = "needs the queueing, prefill and KV transfer parts"
        else:
            parts["decode_first_step"] = max(0.0, server_ttft - sum(known))  # type: ignore[arg-type]
    return {
        "ttft_s": client_ttft_s,
        "server_ttft_s": server_ttft,
        "parts": parts,
        "missing": missing,
    }
