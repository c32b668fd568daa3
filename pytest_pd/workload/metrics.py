"""Records -> RunSummary, with SGLang bench_serving's definitions and JSON key names.

Pure: no I/O, no clocks; numpy for every statistic. Failed requests are excluded from every
latency statistic (they never contribute a TTFT of 0); statistics over no values are NaN, never 0.

- TTFT = first output-bearing chunk - request start (start is after the concurrency slot).
- E2E latency = last line of the stream - request start.
- TPOT = (latency - TTFT) / (completion_tokens - 1), for completion_tokens > 1.
- ITL = gap between successive output-bearing chunks divided by the chunk's new tokens, repeated
  once per new token, pooled over requests (one value per gap when per-chunk counts are unknown).
  Per-chunk counts come from the server, or from the run's tokenizer; ``token_count_source`` says
  which (``server per chunk`` | ``tokenizer`` | ``one per chunk``, or ``mixed: …`` with counts).
- Throughputs over duration = last completion - first dispatch (measured requests only);
  concurrency = sum of latencies / duration.
- Queue time = request start - scheduled arrival (client-side queueing, not part of TTFT).

Beyond bench_serving: p90s, goodput under SLOs (requests/s meeting every SLO, and the share of
requests that did), peak output tokens/s in 1 s buckets, error counts by kind, server-reported
input/output length mismatches, and :func:`aggregate_repeats` (median over repeats).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .request_table import request_table as request_table  # re-exported: its old home
from .spec import WorkloadError

if TYPE_CHECKING:
    from .record import RequestRecord
    from .result import RunResult

NAN = math.nan
EXAMPLE_CHARS = 300

SLO_KEYS = {"ttft_ms": "ttft", "tpot_ms": "tpot", "e2e_ms": "e2e", "e2e_latency_ms": "e2e", "itl_ms": "itl"}
"""SLO names accepted by :func:`summarize` (``itl_ms`` bounds a request's largest ITL)."""

SUMMED_ON_REPEAT = (
    "failed",
    "output_len_mismatches",
    "input_len_mismatches",
    "input_len_unchecked",
    "not_sent",
)
"""Counters :func:`aggregate_repeats` adds up over repeats (so no error hides behind a median)."""


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
    error_examples: dict[str, str] = field(default_factory=dict)
    """The first failed request's message of each error kind (what the server or socket said)."""
    output_len_mismatches: int = 0
    mean_queue_ms: float = NAN
    # --- added for issue #5 -------------------------------------------------------------------
    input_len_mismatches: int = 0
    """Completed requests whose server-reported prompt length differs from the prompt's."""
    mismatch_share: float = 0.0
    """Share of completed requests with an input or output length mismatch."""
    median_queue_ms: float = NAN
    p99_queue_ms: float = NAN
    max_queue_ms: float = NAN
    peak_output_throughput: float = NAN
    """Most output tokens received in one 1 s bucket (buckets start at the first dispatch)."""
    goodput: float = NAN
    """Requests per second that met every SLO (NaN when no SLO was given)."""
    goodput_ratio: float = NAN
    """Share of the measured requests that met every SLO (failed ones never do)."""
    slo: dict[str, float] = field(default_factory=dict)
    not_sent: int = 0
    total_cached_tokens: int = 0
    repeats: int = 1
    input_len_unchecked: int = 0
    """Completed requests whose prompt length the client could not predict (the chat API with a
    tokenizer that has no chat template): not in ``input_len_mismatches``."""
    token_count_source: str = ""
    """Where the ITL's per-chunk token counts came from (see the module docstring); "" when no
    request completed."""

    def to_dict(self) -> dict[str, Any]:
        """Plain dict keyed like bench_serving's JSON; statistics without data stay NaN."""
        return dataclasses.asdict(self)

    def to_json_dict(self) -> dict[str, Any]:
        """Strict-JSON dict: NaN (no data) becomes ``None``; :meth:`from_dict` restores NaN."""
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in self.to_dict().items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSummary:
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                continue
            v = data[f.name]
            kwargs[f.name] = NAN if v is None else v
        kwargs["errors_by_kind"] = dict(kwargs.get("errors_by_kind") or {})
        kwargs["error_examples"] = dict(kwargs.get("error_examples") or {})
        kwargs["slo"] = dict(kwargs.get("slo") or {})
        return cls(**kwargs)

    @property
    def all_failed(self) -> bool:
        return self.completed == 0


def _stats(
    values: np.ndarray, prefix: str, suffix: str, percentiles: Iterable[int], with_max: bool = False
) -> dict[str, Any]:
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
        new = np.diff(np.asarray(record.chunk_tokens, dtype=np.int64)).astype(np.int64)
        keep = new > 0
        return np.repeat(gaps[keep] / new[keep], new[keep])
    return gaps


def _chunk_token_counts(record: RequestRecord) -> np.ndarray:
    """Output tokens carried by each output chunk (server counts; without per-chunk counts one
    per chunk, the rest of the server's total on the last chunk)."""
    n = len(record.chunk_times)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    if len(record.chunk_tokens) == n:
        return np.diff(np.asarray(record.chunk_tokens, dtype=np.int64), prepend=0)
    counts = np.ones(n, dtype=np.int64)
    counts[-1] += max(0, (record.completion_tokens or 0) - n)
    return counts


def token_count_source(records: Sequence[RequestRecord]) -> str:
    """The one source of the per-chunk token counts of ``records`` (completed ones), or
    ``mixed: source n, …`` when they differ."""
    sources = Counter(r.token_source or "one per chunk" for r in records)
    if len(sources) <= 1:
        return next(iter(sources), "")
    return "mixed: " + ", ".join(f"{k} {v}" for k, v in sorted(sources.items()))


def _ok(records: Iterable[RequestRecord]) -> list[RequestRecord]:
    return [
        r
        for r in records
        if r.error_kind is None
        and r.t_start is not None
        and r.t_end is not None
        and r.t_first_token is not None
    ]


def peak_output_throughput(result: RunResult, bucket_s: float = 1.0) -> float:
    """Most output tokens of completed requests that arrived within one ``bucket_s`` bucket,
    per second (buckets start at the first dispatch). NaN without output."""
    ok = _ok(result.records)
    if not ok:
        return NAN
    times = np.concatenate([np.asarray(r.chunk_times, dtype=float) for r in ok])
    counts = np.concatenate([_chunk_token_counts(r) for r in ok])
    if times.size == 0:
        return NAN
    t0 = min(r.t_start for r in ok if r.t_start is not None)
    idx = np.floor((times - t0) / bucket_s).astype(np.int64)
    idx -= min(0, int(idx.min()))
    per_bucket = np.bincount(idx, weights=counts)
    return float(per_bucket.max() / bucket_s)


def _parse_slo(slo: Mapping[str, float] | None) -> dict[str, float]:
    if not slo:
        return {}
    out = {}
    for key, value in slo.items():
        if key not in SLO_KEYS:
            raise WorkloadError(
                f"Unknown SLO {key!r}; use {', '.join(sorted(SLO_KEYS))} "
                "(milliseconds), e.g. ttft_ms=2000 tpot_ms=50."
            )
        v = float(value)
        if not v > 0:
            raise WorkloadError(f"SLO {key}={value!r} must be a positive number of milliseconds.")
        out[key] = v
    return out


def summarize(result: RunResult, slo: Mapping[str, float] | None = None) -> RunSummary:
    """Summarize a run's measured records (warm-up excluded); ``slo`` (ms, keys of
    :data:`SLO_KEYS`) adds goodput."""
    slo_ms = _parse_slo(slo)
    records = list(result.records)
    ok = _ok(records)
    failed = len(records) - len(ok)
    ok_ids = {id(r) for r in ok}
    errors = Counter(r.error_kind or "unknown" for r in records if id(r) not in ok_ids)
    examples: dict[str, str] = {}
    for r in records:
        if id(r) not in ok_ids:
            examples.setdefault(r.error_kind or "unknown", str(r.error or "")[:EXAMPLE_CHARS])

    n_ok = len(ok)
    t_start = np.fromiter((r.t_start for r in ok), dtype=float, count=n_ok)
    t_first = np.fromiter((r.t_first_token for r in ok), dtype=float, count=n_ok)
    t_end = np.fromiter((r.t_end for r in ok), dtype=float, count=n_ok)
    t_queued = np.fromiter((NAN if r.t_queued is None else r.t_queued for r in ok), dtype=float, count=n_ok)
    out_tokens = np.fromiter((r.completion_tokens or 0 for r in ok), dtype=np.int64, count=n_ok)
    expected_out = np.fromiter((r.expected_output_len for r in ok), dtype=np.int64, count=n_ok)
    prompt_len = np.fromiter((r.prompt_len for r in ok), dtype=np.int64, count=n_ok)
    server_in = np.fromiter(
        (-1 if r.prompt_tokens is None else r.prompt_tokens for r in ok), dtype=np.int64, count=n_ok
    )
    cached = np.fromiter((r.cached_tokens or 0 for r in ok), dtype=np.int64, count=n_ok)

    ttft = t_first - t_start
    e2e = t_end - t_start
    queue = (t_start - t_queued)[~np.isnan(t_queued)]
    in_tokens = np.where(server_in >= 0, server_in, prompt_len)
    multi = out_tokens > 1
    tpot = (e2e[multi] - ttft[multi]) / (out_tokens[multi] - 1)
    itl_parts = [request_itls(r) for r in ok]
    itl = np.concatenate(itl_parts) if ok else np.empty(0)
    out_bad = out_tokens != expected_out
    unknown_in = prompt_len <= 0  # a chat prompt without a chat template to count it
    in_bad = (server_in >= 0) & ~unknown_in & (server_in != prompt_len)

    starts = [r.t_start for r in records if r.t_start is not None]
    ends = [r.t_end for r in records if r.t_end is not None]
    duration = float(max(ends) - min(starts)) if starts and ends else NAN
    if not (duration > 0):
        duration = NAN
    total_in = int(in_tokens.sum())
    total_out = int(out_tokens.sum())

    goodput = goodput_ratio = NAN
    if slo_ms:
        good = np.ones(n_ok, dtype=bool)
        if "ttft_ms" in slo_ms:
            good &= ttft * 1000.0 <= slo_ms["ttft_ms"]
        if "tpot_ms" in slo_ms:  # single-token requests have no TPOT: nothing to violate
            req_tpot = np.zeros(n_ok)
            req_tpot[multi] = tpot
            good &= req_tpot * 1000.0 <= slo_ms["tpot_ms"]
        for key in ("e2e_ms", "e2e_latency_ms"):
            if key in slo_ms:
                good &= e2e * 1000.0 <= slo_ms[key]
        if "itl_ms" in slo_ms:
            worst = np.fromiter((p.max() if p.size else 0.0 for p in itl_parts), dtype=float, count=n_ok)
            good &= worst * 1000.0 <= slo_ms["itl_ms"]
        n_good = int(good.sum())
        goodput = n_good / duration
        goodput_ratio = n_good / len(records) if records else NAN

    queue_ms = queue * 1000.0
    return RunSummary(
        duration=duration,
        completed=n_ok,
        failed=failed,
        total_input_tokens=total_in,
        total_output_tokens=total_out,
        request_throughput=n_ok / duration,
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
        error_examples=dict(sorted(examples.items())),
        output_len_mismatches=int(out_bad.sum()),
        mean_queue_ms=float(np.mean(queue_ms)) if queue.size else NAN,
        input_len_mismatches=int(in_bad.sum()),
        mismatch_share=float((out_bad | in_bad).mean()) if n_ok else 0.0,
        median_queue_ms=float(np.median(queue_ms)) if queue.size else NAN,
        p99_queue_ms=float(np.percentile(queue_ms, 99)) if queue.size else NAN,
        max_queue_ms=float(np.max(queue_ms)) if queue.size else NAN,
        peak_output_throughput=peak_output_throughput(result),
        goodput=goodput,
        goodput_ratio=goodput_ratio,
        slo=slo_ms,
        not_sent=int(getattr(result, "not_sent", 0)),
        total_cached_tokens=int(cached.sum()),
        input_len_unchecked=int(unknown_in.sum()),
        token_count_source=token_count_source(ok),
    )


def aggregate_repeats(summaries: Sequence[RunSummary]) -> RunSummary:
    """One summary for repeated runs of a workload: the median of each numeric metric over the
    repeats (NaN-ignoring; NaN when no repeat has data), with the failure counters
    (:data:`SUMMED_ON_REPEAT`, ``errors_by_kind``) summed and ``mismatch_share`` the worst repeat's.
    """
    if not summaries:
        raise ValueError("aggregate_repeats() needs at least one summary")
    if len(summaries) == 1:
        return summaries[0]
    first = summaries[0]
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(RunSummary):
        name = f.name
        values = [getattr(s, name) for s in summaries]
        if name == "errors_by_kind":
            total: Counter[str] = Counter()
            for v in values:
                total.update(v)
            kwargs[name] = dict(sorted(total.items()))
        elif name == "error_examples":
            kwargs[name] = {k: v for s in reversed(summaries) for k, v in s.error_examples.items()}
        elif name == "slo":
            kwargs[name] = dict(first.slo)
        elif name == "repeats":
            kwargs[name] = int(sum(values))
        elif name in SUMMED_ON_REPEAT:
            kwargs[name] = int(sum(values))
        elif name == "mismatch_share":
            kwargs[name] = float(np.max(values))
        elif name == "token_count_source":
            kwargs[name] = " / ".join(dict.fromkeys(v for v in values if v))
        elif isinstance(getattr(first, name), bool):
            kwargs[name] = getattr(first, name)
        elif isinstance(getattr(first, name), int):
            kwargs[name] = int(np.rint(np.median(np.asarray(values, dtype=float))))
        else:
            arr = np.asarray(values, dtype=float)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                kwargs[name] = float(np.nanmedian(arr)) if not np.isnan(arr).all() else NAN
    return RunSummary(**kwargs)


def run_problems(summary: RunSummary | Mapping[str, Any], max_mismatch_share: float = 0.0) -> list[str]:
    """Why a run must not be trusted: failed requests, requests never sent, or a share of length
    mismatches above ``max_mismatch_share``. Empty when the run is sound. Takes a summary or its
    ``to_dict()`` (keys it lacks count as zero)."""
    m = summary.to_dict() if isinstance(summary, RunSummary) else summary
    failed, completed = int(m.get("failed", 0)), int(m.get("completed", 0))
    problems = []
    if failed:
        kinds = ", ".join(f"{k}: {v}" for k, v in sorted(dict(m.get("errors_by_kind") or {}).items()))
        firsts = "".join(
            f"; first {kind}: {text}"
            for kind, text in sorted(dict(m.get("error_examples") or {}).items())
            if text
        )
        problems.append(f"{failed} of {failed + completed} requests failed ({kinds}){firsts}")
    if completed == 0:
        problems.append("no request completed")
    share = float(m.get("mismatch_share", 0.0) or 0.0)
    if share > max_mismatch_share:
        problems.append(
            f"{share:.1%} of completed requests had a server-reported length different from the "
            f"requested one ({m.get('input_len_mismatches', 0)} input, "
            f"{m.get('output_len_mismatches', 0)} output; allowed share {max_mismatch_share:.1%}; "
            "is ignore_eos honoured?)"
        )
    if m.get("not_sent"):
        problems.append(
            f"{m['not_sent']} request(s) not sent (duration limit reached, or the run was stopped)"
        )
    return problems
