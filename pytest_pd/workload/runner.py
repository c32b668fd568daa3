"""Drive a workload: warm-up, concurrency cap, request rate, progress, cancellation."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import numpy as np

from .client import READ_BUFSIZE, RequestRecord, fetch_model_id, send_request
from .prompts import API_COMPLETIONS, WARMUP_OUTPUT_LEN, Prompt, Workload, WorkloadError

__all__ = ["RequestRecord", "RunResult", "ProgressFn", "run_workload", "run_workload_sync",
           "arrival_offsets"]

ProgressFn = Callable[[int, int, int, int], Any]
"""on_progress(done, total, output_tokens, failed), called after each measured request."""

MODEL_LOOKUP_TIMEOUT_S = 60.0


@dataclass
class RunResult:
    """Records of one measured run. ``started``/``finished`` are perf_counter values of the first
    dispatch (first request start) and the last completion of the measured requests."""

    workload: Workload
    records: list[RequestRecord]
    started: float
    finished: float
    base_url: str
    warmup: list[RequestRecord] = field(default_factory=list)
    model: str | None = None

    @property
    def duration(self) -> float:
        return self.finished - self.started

    def to_dict(self) -> dict[str, Any]:
        return {
            "workload": self.workload.to_dict(),
            "records": [r.to_dict() for r in self.records],
            "started": self.started,
            "finished": self.finished,
            "base_url": self.base_url,
            "warmup": [r.to_dict() for r in self.warmup],
            "model": self.model,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        return cls(
            workload=Workload.from_dict(data["workload"]),
            records=[RequestRecord.from_dict(r) for r in data["records"]],
            started=data["started"],
            finished=data["finished"],
            base_url=data["base_url"],
            warmup=[RequestRecord.from_dict(r) for r in data.get("warmup", [])],
            model=data.get("model"),
        )


def arrival_offsets(workload: Workload, n: int) -> np.ndarray:
    """Seconds after the first dispatch at which each request is scheduled.

    Infinite rate: all at 0. Finite rate: Poisson process (exponential gaps, seeded); the first
    request goes at 0.
    """
    if math.isinf(workload.request_rate) or n == 0:
        return np.zeros(n)
    rng = np.random.default_rng([workload.seed, 1])  # independent of the prompt stream
    gaps = rng.exponential(1.0 / workload.request_rate, size=n)
    return np.concatenate(([0.0], np.cumsum(gaps[:-1])))


def _check_base_url(base_url: str) -> str:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WorkloadError(
            f"Base URL {base_url!r} is not an http(s) URL with a host, e.g. "
            "'http://127.0.0.1:8000' (the router's address)."
        )
    return base_url.rstrip("/")


async def run_workload(
    base_url: str,
    workload: Workload,
    prompts: Sequence[Prompt],
    *,
    on_progress: ProgressFn | None = None,
) -> RunResult:
    """Send ``prompts`` to ``base_url`` as ``workload`` says and record every request.

    Warm-up requests (the first prompt, 16 output tokens) run first, one after the other, and
    are kept apart in ``RunResult.warmup``. Measured requests are scheduled by arrival time and
    run under an ``asyncio.Semaphore(workload.concurrency)``; each record's ``t_start`` is taken
    after the semaphore is acquired. Request failures are recorded, not raised; cancellation
    cancels every in-flight request.
    """
    base_url = _check_base_url(base_url)
    if not prompts:
        raise WorkloadError(
            "No prompts to send: build them with build_prompts(tokenizer, workload)."
        )
    api = workload.api
    timeout_s = float(workload.request_timeout_s)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector,
        read_bufsize=READ_BUFSIZE,
        timeout=aiohttp.ClientTimeout(total=None),
    ) as session:
        model = None
        if api == API_COMPLETIONS:
            model = await fetch_model_id(session, base_url, min(timeout_s, MODEL_LOOKUP_TIMEOUT_S))

        warmup: list[RequestRecord] = []
        for i in range(workload.warmup_requests):
            p = prompts[i % len(prompts)]
            rec = RequestRecord(index=-1 - i, prompt_len=len(p.token_ids),
                                expected_output_len=WARMUP_OUTPUT_LEN)
            rec.t_queued = time.perf_counter()
            await send_request(session, base_url, api, p, rec, max_tokens=WARMUP_OUTPUT_LEN,
                               timeout_s=timeout_s, model=model)
            warmup.append(rec)

        total = len(prompts)
        records = [RequestRecord(index=i, prompt_len=len(p.token_ids),
                                 expected_output_len=p.output_len)
                   for i, p in enumerate(prompts)]
        sem = asyncio.Semaphore(workload.concurrency)
        counters = {"done": 0, "failed": 0, "tokens": 0}

        async def one(i: int) -> None:
            rec = records[i]
            async with sem:
                rec.t_start = time.perf_counter()
                await send_request(session, base_url, api, prompts[i], rec,
                                   max_tokens=prompts[i].output_len, timeout_s=timeout_s,
                                   model=model)
            counters["done"] += 1
            if rec.error_kind is None:
                counters["tokens"] += rec.completion_tokens or 0
            else:
                counters["failed"] += 1
            if on_progress is not None:
                on_progress(counters["done"], total, counters["tokens"], counters["failed"])

        offsets = arrival_offsets(workload, total)
        tasks: list[asyncio.Task[None]] = []
        try:
            t0 = time.perf_counter()
            for i in range(total):
                delay = t0 + float(offsets[i]) - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                records[i].t_queued = time.perf_counter()
                tasks.append(asyncio.create_task(one(i)))
            await asyncio.gather(*tasks)
        finally:
            pending = [t for t in tasks if not t.done()]
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

    starts = [r.t_start for r in records if r.t_start is not None]
    ends = [r.t_end for r in records if r.t_end is not None]
    started = min(starts) if starts else math.nan
    finished = max(ends) if ends else math.nan
    return RunResult(workload=workload, records=records, started=started, finished=finished,
                     base_url=base_url, warmup=warmup, model=model)


def run_workload_sync(
    base_url: str,
    workload: Workload,
    prompts: Sequence[Prompt],
    *,
    on_progress: ProgressFn | None = None,
) -> RunResult:
    """:func:`run_workload` in a fresh event loop (for callers without one)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run_workload(base_url, workload, prompts, on_progress=on_progress))
    raise WorkloadError(
        "run_workload_sync() was called from inside a running event loop; "
        "use 'await run_workload(...)' there instead."
    )
