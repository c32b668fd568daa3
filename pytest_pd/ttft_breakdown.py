"""Where the time to first token goes: the client's mean TTFT split into client and router,
queueing, prefill, KV transfer and the decode side's hand-off and first step. Pure and
engine-neutral: each engine reads its own metrics into :class:`ServerTimes` (SGLang's in
:mod:`pytest_pd.cluster.engines.sglang.metrics`); this module does the arithmetic.

The parts are means over the run's requests, each from the server that measures it:

- ``queueing``: arrival in the prefill (or unified) server's waiting queue to its first forward
  batch (on a PD prefill, plus the wait for the decode's handshake, where the engine says);
- ``prefill``: first forward batch to the prefill's end (all chunks, a PP pipeline included);
- ``kv_transfer``: the KV cache's transfer to the decode server (0 on a unified server);
- ``decode_first_step``: what is left of the decode (or unified) server's own TTFT after the three
  parts above: the KV hand-off's bootstrap, the decode's queues and its first step;
- ``client_router``: the client's mean TTFT minus that server TTFT: the router, the network and
  the client (its own parsing included).

A part the servers do not export is ``None`` with the reason in ``missing``; the per-request split
is not possible from the client alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PARTS = ("client_router", "queueing", "prefill", "kv_transfer", "decode_first_step")
PART_TITLES = {
    "client_router": "client + router",
    "queueing": "queueing (prefill)",
    "prefill": "prefill compute",
    "kv_transfer": "KV transfer",
    "decode_first_step": "decode: hand-off + first step",
}
SERVER_PARTS = ("queueing", "prefill", "kv_transfer")


@dataclass(frozen=True)
class ServerTimes:
    """Mean seconds per request the servers measured over a run; None where they export nothing,
    with the reason in ``missing`` (part name, or ``server_ttft``, → why)."""

    queueing: float | None
    prefill: float | None
    kv_transfer: float | None
    server_ttft: float | None  # the decode (or unified) server's own time to first token
    missing: dict[str, str] = field(default_factory=dict)


def ttft_breakdown(times: ServerTimes | None, client_ttft_s: float | None) -> dict[str, Any] | None:
    """The breakdown of ``client_ttft_s`` (the run's mean TTFT, model seconds) by the servers'
    ``times``; None without them or without a measured TTFT. ``parts``: name → seconds or None;
    ``missing``: name → why it could not be measured."""
    if times is None or client_ttft_s is None or client_ttft_s != client_ttft_s:
        return None
    parts: dict[str, float | None] = dict.fromkeys(PARTS)
    missing = {name: why for name, why in times.missing.items() if name in SERVER_PARTS}
    for name in SERVER_PARTS:
        parts[name] = getattr(times, name)
    if times.server_ttft is None:
        why = times.missing.get("server_ttft", "the decode servers export no time to first token")
        missing["client_router"] = missing["decode_first_step"] = why
    else:
        parts["client_router"] = max(0.0, client_ttft_s - times.server_ttft)
        known = [parts[n] for n in SERVER_PARTS]
        if None in known:
            missing["decode_first_step"] = "needs the queueing, prefill and KV transfer parts"
        else:
            parts["decode_first_step"] = max(0.0, times.server_ttft - sum(known))  # type: ignore[arg-type]
    return {"ttft_s": client_ttft_s, "server_ttft_s": times.server_ttft, "parts": parts, "missing": missing}
