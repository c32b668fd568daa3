"""Where the time to first token goes: the client's mean TTFT split into client and router,
queueing, prefill, KV transfer and the decode side's hand-off and first step. Pure and
engine-neutral: each engine reads its own metrics into :class:`ServerTimes` (SGLang's in
:mod:`pytest_pd.cluster.engines.sglang.metrics`), the client keeps what each response says of its
own timing in :class:`RequestTimes`; this module does the arithmetic.

The parts, as means over the run's requests:

- ``client_router``: the client's TTFT minus the answering (decode or unified) server's own TTFT:
  the router, the network and the client (its own parsing included);
- ``queueing``: arrival in the prefill (or unified) server's waiting queue to its first forward
  batch (on a PD prefill, plus the wait for the decode's handshake, where the engine says);
- ``prefill``: first forward batch to the prefill's end (all chunks, a PP pipeline included);
- ``kv_transfer``: the KV cache's transfer to the decode server (0 on a unified server);
- ``decode_first_step``: the rest of the decode server's own TTFT: the KV hand-off's bootstrap,
  the decode's queues and its first step.

Two sources, and the result says which part came from which (``sources``):

- **per request** (:data:`MEASURED`), where every response carries the answering server's own
  timing (SGLang's ``meta_info`` with ``--enable-metrics``): its TTFT and the time from its receipt
  of the request to its first forward batch. Through a PD router that server is the decode, so
  ``client_router`` and the decode's first step are measured per request, and so is the prefill
  side as a whole (the decode waits for it before its first forward); only its split into
  queueing, prefill and KV transfer comes from the prefill servers' run means (:data:`INFERRED`).
  On a unified server every part is measured per request.
- **run means** of the servers' histograms (:data:`RUN_MEAN`) where responses carry nothing.

The prefill side's parts come from one server and the total they must fit from another, so they
need not add up: when they exceed it, they are scaled down in proportion to fit (``scaled``, the
factor), and the parts always add up to the client's TTFT. A part nobody measures is ``None``
with the reason in ``missing``.
"""

from __future__ import annotations

from collections.abc import Iterable
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
MEASURED = "per request"
INFERRED = "run means, fitted to the per-request total"
RUN_MEAN = "run means"


@dataclass(frozen=True)
class ServerTimes:
    """Mean seconds per request the servers measured over a run; None where they export nothing,
    with the reason in ``missing`` (part name, or ``server_ttft``, → why). ``unified``: no
    separate prefill and decode servers."""

    queueing: float | None
    prefill: float | None
    kv_transfer: float | None
    server_ttft: float | None  # the decode (or unified) server's own time to first token
    missing: dict[str, str] = field(default_factory=dict)
    unified: bool = False


@dataclass(frozen=True)
class RequestTimes:
    """Means over the ``count`` requests whose answering server timed them itself: the client's
    TTFT, that server's TTFT, and its receipt of the request to its first forward batch."""

    count: int
    client_ttft: float
    server_ttft: float
    before_forward: float

    @classmethod
    def mean_of(cls, rows: Iterable[tuple[float, float, float]]) -> RequestTimes | None:
        """From (client TTFT, server TTFT, before forward) per request; None without any."""
        rows = list(rows)
        if not rows:
            return None
        n = len(rows)
        return cls(n, *(sum(column) / n for column in zip(*rows, strict=True)))


def _fit(total: float, parts: dict[str, float]) -> tuple[dict[str, float], float | None]:
    """``parts`` as they are when they fit in ``total``, else scaled down in proportion to fill
    it (and the factor)."""
    whole = sum(parts.values())
    if whole <= total or whole <= 0:
        return parts, None
    factor = max(0.0, total) / whole
    return {name: value * factor for name, value in parts.items()}, factor


def ttft_breakdown(
    times: ServerTimes | None, client_ttft_s: float | None, requests: RequestTimes | None = None
) -> dict[str, Any] | None:
    """The breakdown of the run's mean TTFT: per request where ``requests`` is given (then of
    the mean TTFT of those requests), else of ``client_ttft_s`` (model seconds) by the servers'
    run means ``times``; None with neither. ``parts``: name → seconds or None; ``sources``: name →
    :data:`MEASURED`, :data:`INFERRED` or :data:`RUN_MEAN`; ``missing``: name → why not
    measured; ``scaled``: the factor the prefill side's parts were fitted by, or None. None
    without ``times`` (an engine that exports no timing of its own)."""
    if times is None:  # the engine exports no timing of its own: no breakdown
        return None
    if requests is not None:
        if times.unified:
            return _unified(requests)
        req = requests
        return _split(times, req.client_ttft, req.server_ttft, req.before_forward, req.count)
    if client_ttft_s is None or client_ttft_s != client_ttft_s:
        return None
    if times.server_ttft is None:
        why = times.missing.get("server_ttft", "the decode servers export no time to first token")
        server = {name: getattr(times, name) for name in SERVER_PARTS}
        return _result(
            client_ttft_s,
            None,
            {name: server.get(name) for name in PARTS},
            {name: RUN_MEAN for name, value in server.items() if value is not None},
            {**_missing(times), "client_router": why, "decode_first_step": why},
            None,
            None,
        )
    return _split(times, client_ttft_s, times.server_ttft, times.server_ttft, None)


def _missing(times: ServerTimes) -> dict[str, str]:
    return {
        name: times.missing.get(name) or "the prefill servers export no such metric"
        for name in SERVER_PARTS
        if getattr(times, name) is None
    }


def _split(
    times: ServerTimes, ttft: float, server_ttft: float, room: float, count: int | None
) -> dict[str, Any]:
    """``ttft`` split around the answering server's own ``server_ttft``: the client and router
    before it, the prefill side's parts (the servers' run means) fitted into ``room`` (the time the
    decode waited before its first forward, per request; the whole server TTFT with run means
    alone), and the decode's first step after them. ``count``: the requests measured, or None
    (run means)."""
    whole = RUN_MEAN if count is None else MEASURED
    parts: dict[str, float | None] = dict.fromkeys(PARTS)
    parts["client_router"] = max(0.0, ttft - server_ttft)
    sources = {"client_router": whole}
    missing = _missing(times)
    scaled = None
    known = {name: getattr(times, name) for name in SERVER_PARTS}
    if missing:  # the parts there are, as they are; the decode's first step cannot be split off
        parts.update({name: value for name, value in known.items() if value is not None})
        sources.update({name: RUN_MEAN for name, value in known.items() if value is not None})
        missing["decode_first_step"] = "needs the queueing, prefill and KV transfer parts" + (
            ""
            if count is None
            else f" (the decode measured {room:.3f} s per request before its first "
            "forward: the prefill side and the hand-off)"
        )
    else:
        fitted, scaled = _fit(room, known)
        parts.update(fitted)
        parts["decode_first_step"] = max(0.0, server_ttft - sum(fitted.values()))
        sources.update(dict.fromkeys(SERVER_PARTS, RUN_MEAN if count is None else INFERRED))
        sources["decode_first_step"] = whole
    return _result(ttft, server_ttft, parts, sources, missing, scaled, count)


def _unified(req: RequestTimes) -> dict[str, Any]:
    """A unified server answers alone: its own queue, then its prefill, per request."""
    parts: dict[str, float | None] = {
        "client_router": max(0.0, req.client_ttft - req.server_ttft),
        "queueing": req.before_forward,
        "prefill": max(0.0, req.server_ttft - req.before_forward),
        "kv_transfer": 0.0,
        "decode_first_step": 0.0,
    }
    sources = dict.fromkeys(PARTS, MEASURED)
    return _result(req.client_ttft, req.server_ttft, parts, sources, {}, None, req.count)


def _result(
    ttft: float,
    server_ttft: float | None,
    parts: dict[str, float | None],
    sources: dict[str, str],
    missing: dict[str, str],
    scaled: float | None,
    requests: int | None,
) -> dict[str, Any]:
    return {
        "ttft_s": ttft,
        "server_ttft_s": server_ttft,
        "parts": parts,
        "sources": {name: sources[name] for name in PARTS if name in sources},
        "missing": missing,
        "scaled": scaled,
        "requests": requests,
    }
