"""Drive a workload: warm-up, closed loop (concurrency cap) and open loop (Poisson / gamma
arrivals), duration limit, progress, cancellation, and a multi-process mode.

Timing: ``t_queued`` is when a request is due (its scheduled arrival), ``t_start`` is taken after
its concurrency slot is acquired (bench_serving's definition, so TTFT excludes client queueing;
the queueing is reported separately).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import numpy as np

from .chunk_count import counted
from .client import IGNORE_EOS_HINT, encode_body, fetch_model_id, request_payload, send_request
from .conversation import Conversation, conversation_units
from .pacing import AbortFn, Pacer, Stop
from .record import ABORTED, RequestRecord
from .result import RunResult
from .spec import API_CHAT, API_GENERATE, WARMUP_OUTPUT_LEN, Prompt, Workload, WorkloadError
from .trace import trace_offsets
from .transport import Dialer

__all__ = [
    "RequestRecord",
    "RunResult",
    "ProgressFn",
    "run_workload",
    "arrival_offsets",
    "run_async",
    "AbortFn",
]

ProgressFn = Callable[[int, int, int, int], Any]
"""on_progress(done, total, output_tokens, failed), called after each measured request (and, with
``progress_interval_s``, periodically with the tokens streamed so far, in-flight ones included)."""

MODEL_LOOKUP_TIMEOUT_S = 60.0
CHILD_START_LEAD_S = 0.2
STARTS_PER_TURN = 4
T = TypeVar("T")


def arrival_offsets(workload: Workload, n: int) -> np.ndarray:
    """Seconds after the first dispatch at which each request is scheduled.

    A trace replay: the trace's timestamps (:func:`.trace.trace_offsets`). Infinite rate: all at 0
    (closed loop: the concurrency cap paces them). Finite rate: gaps drawn
    from a gamma distribution with shape ``burstiness`` and mean ``1/request_rate`` (shape 1 is a
    Poisson process), seeded by ``workload.seed``; the first request goes at 0. A multi-turn
    workload's rate is that of its conversations: each of a conversation's requests has its
    conversation's start (its later turns follow their answers).
    """
    if workload.trace_path:
        return trace_offsets(workload)[:n]
    if math.isinf(workload.request_rate) or n == 0:
        return np.zeros(n)
    turns = workload.turns
    m = -(-n // turns)  # conversations (requests when single-turn)
    rng = np.random.default_rng([workload.seed, 1])  # independent of the prompt stream
    shape = float(workload.burstiness)
    gaps = rng.gamma(shape, 1.0 / (workload.request_rate * shape), size=m)
    starts = np.concatenate(([0.0], np.cumsum(gaps[:-1])))
    return np.repeat(starts, turns)[:n] if turns > 1 else starts


def check_base_url(base_url: str) -> str:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WorkloadError(
            f"Base URL {base_url!r} is not an http(s) URL with a host, e.g. "
            "'http://127.0.0.1:8000' (the router's address)."
        )
    return base_url.rstrip("/")


async def prepare(
    dialer: Dialer,
    base_url: str,
    workload: Workload,
    prompts: Sequence[Prompt],
    rid_prefix: str | None,
    model: str | None = None,
) -> tuple[str | None, list[RequestRecord]]:
    """Model id (for the OpenAI APIs) and the warm-up requests, one after the other; a warm-up
    request refused for its ``ignore_eos`` raises :class:`WorkloadError` (every request would be)."""
    api = workload.api
    timeout_s = float(workload.request_timeout_s)
    if api != API_GENERATE and not model:
        model = await fetch_model_id(dialer, base_url, min(timeout_s, MODEL_LOOKUP_TIMEOUT_S))
    warmup: list[RequestRecord] = []
    for i in range(workload.warmup_requests):
        p = prompts[i % len(prompts)]
        rec = RequestRecord(
            index=-1 - i,
            prompt_len=len(p),
            expected_output_len=WARMUP_OUTPUT_LEN,
            rid=None if rid_prefix is None else f"{rid_prefix}-w{i}",
        )
        rec.t_queued = time.perf_counter()
        await send_request(
            dialer,
            base_url,
            api,
            p,
            rec,
            max_tokens=WARMUP_OUTPUT_LEN,
            timeout_s=timeout_s,
            model=model,
            ignore_eos=workload.ignore_eos,
        )
        if IGNORE_EOS_HINT in rec.error:
            raise WorkloadError(f"warm-up request failed: {rec.error}")
        warmup.append(rec)
    return model, warmup


@dataclass
class Part:
    records: list[RequestRecord]
    not_sent: int
    cpu_s: float = 0.0


async def drive(
    dialer: Dialer,
    base_url: str,
    workload: Workload,
    prompts: Sequence[Prompt],
    indices: Sequence[int],
    offsets: np.ndarray,
    concurrency: int,
    model: str | None,
    *,
    start_at: float | None,
    on_progress: ProgressFn | None,
    total: int,
    progress_interval_s: float | None,
    rid_prefix: str | None,
    stop: Stop | None = None,
) -> Part:
    """Send ``prompts[i]`` for ``i`` in ``indices`` at ``start_at + offsets[k]`` under a cap of
    ``concurrency`` requests in flight. Once ``stop`` fires, nothing more is sent and requests in
    flight end as ``aborted`` with its reason.

    A multi-turn workload's conversations (:mod:`.conversation`) each hold one place under the
    cap from its first turn, due at its offset, to its last: a turn is sent ``think_time_s``
    after the previous answer ended, with the conversation so far before its own prompt. A
    failed turn ends its conversation (the later turns are not sent)."""
    stop = stop or Stop(None)
    api = workload.api
    timeout_s = float(workload.request_timeout_s)
    records = [
        RequestRecord(
            index=i,
            prompt_len=len(prompts[i]),
            expected_output_len=prompts[i].output_len,
            rid=None if rid_prefix is None else f"{rid_prefix}-{i}",
        )
        for i in indices
    ]
    units = conversation_units(indices, workload.turns)
    think_s = float(workload.think_time_s)
    sent = [False] * len(records)
    sending: list[int | None] = [None] * len(units)  # the position each unit has in flight
    sem = asyncio.Semaphore(concurrency)
    counters = {"done": 0, "failed": 0, "tokens": 0}
    perf = time.perf_counter
    stop_at = math.inf
    pacer = Pacer(STARTS_PER_TURN)

    async def one(u: int) -> None:
        talk = Conversation(api == API_CHAT) if workload.turns > 1 else None
        async with sem:
            for turn, k in enumerate(units[u]):
                rec = records[k]
                if turn:
                    if think_s > 0:
                        await stop.sleep(think_s)
                    rec.t_queued = perf()
                await pacer.turn()
                if perf() >= stop_at or stop.reason:
                    return  # the duration limit passed (or the run stopped) while it waited: never sent
                prompt = prompts[rec.index]
                if talk is not None:
                    prompt = talk.next_prompt(prompt)
                    rec.prompt_len = len(prompt)
                body = encode_body(
                    request_payload(
                        api,
                        prompt,
                        max_tokens=prompt.output_len,
                        model=model,
                        rid=rec.rid,
                        ignore_eos=workload.ignore_eos,
                    )
                )
                sent[k] = True
                sending[u] = k
                rec.t_start = perf()
                await send_request(
                    dialer,
                    base_url,
                    api,
                    prompt,
                    rec,
                    max_tokens=prompt.output_len,
                    timeout_s=timeout_s,
                    model=model,
                    body=body,
                    answer=None if talk is None else talk.answer,
                )
                sending[u] = None
                counters["done"] += 1
                if rec.error_kind is None:
                    counters["tokens"] += rec.completion_tokens or 0
                else:
                    counters["failed"] += 1
                if on_progress is not None:
                    on_progress(counters["done"], total, counters["tokens"], counters["failed"])
                if talk is not None:
                    if rec.error_kind is not None:
                        return  # the conversation cannot go on without this answer
                    talk.check_answer(rec.completion_tokens, base_url)

    async def ticker() -> None:
        assert progress_interval_s is not None and on_progress is not None
        while True:
            await asyncio.sleep(progress_interval_s)
            streamed = sum(r.completion_tokens or 0 for r in records if r.error_kind is None)
            on_progress(counters["done"], total, streamed, counters["failed"])

    tasks: list[asyncio.Task[None]] = []  # tasks[u] sends units[u]

    def abort_in_flight(reason: str) -> None:
        for u, task in enumerate(tasks):
            if not task.done():
                k = sending[u]
                if k is not None:
                    records[k].fail(ABORTED, f"run stopped: {reason}")
                task.cancel()

    stop.on_stop.append(abort_in_flight)
    cpu0 = time.process_time()
    # no cyclic-GC pauses while timing (they reach tens of ms with 1000+ streams' records);
    # everything allocated here is freed by reference counting, and GC runs again afterwards
    gc_was_enabled = gc.isenabled()
    gc.disable()
    tick = asyncio.create_task(ticker()) if progress_interval_s and on_progress is not None else None
    try:
        if start_at is not None:
            delay = start_at - perf()
            if delay > 0:
                await asyncio.sleep(delay)
        t0 = perf() if start_at is None else start_at
        stop_at = t0 + float(workload.duration_limit_s)
        for u, unit in enumerate(units):
            due = t0 + float(offsets[unit[0]])
            if due >= stop_at or stop.reason:
                break
            delay = due - perf()
            if delay > 0:
                await stop.sleep(delay)
            if perf() >= stop_at or stop.reason:
                break
            records[unit[0]].t_queued = max(due, t0)
            tasks.append(asyncio.create_task(one(u)))
        if tasks:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        bugs = [t.exception() for t in tasks if t.done() and not t.cancelled()]
        for bug in bugs:  # a bug in a request task is not a request failure: raise it
            if bug is not None:
                raise bug
    finally:
        stop.on_stop.remove(abort_in_flight)
        pending = [t for t in tasks if not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        if tick is not None:
            tick.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await tick
        if gc_was_enabled:
            gc.enable()
    kept = [r for r, s in zip(records, sent, strict=True) if s]
    return Part(kept, len(records) - len(kept), time.process_time() - cpu0)


def result_of(
    workload: Workload,
    records: list[RequestRecord],
    base_url: str,
    warmup: list[RequestRecord],
    model: str | None,
    not_sent: int,
    processes: int = 1,
    cpu_s: float | None = None,
) -> RunResult:
    records.sort(key=lambda r: r.index)
    starts = [r.t_start for r in records if r.t_start is not None]
    ends = [r.t_end for r in records if r.t_end is not None]
    started = min(starts) if starts else math.nan
    finished = max(ends) if ends else math.nan
    return RunResult(
        workload=workload,
        records=records,
        started=started,
        finished=finished,
        base_url=base_url,
        warmup=warmup,
        model=model,
        not_sent=not_sent,
        client_processes=processes,
        client_cpu_s=cpu_s,
    )


async def run_workload(
    base_url: str,
    workload: Workload,
    prompts: Sequence[Prompt],
    *,
    on_progress: ProgressFn | None = None,
    progress_interval_s: float | None = None,
    rid_prefix: str | None = None,
    model: str | None = None,
    abort: AbortFn | None = None,
    tokenizer: Any = None,
    after_warmup: Callable[[], None] | None = None,
) -> RunResult:
    """Send ``prompts`` to ``base_url`` as ``workload`` says and record every request, in this
    event loop (one process; see :func:`run_workload_sync` for ``client_processes > 1``).

    Warm-up requests (the first prompts, 16 output tokens each) run first, one after the other,
    and are kept apart in ``RunResult.warmup``. Measured requests are scheduled by arrival time and
    run under a cap of ``workload.concurrency`` in flight. Request failures are recorded, not
    raised; cancellation cancels every in-flight request. ``rid_prefix`` sends ``rid`` =
    ``{rid_prefix}-{index}`` with each request (to match server-side traces). ``model`` is the
    ``/v1/completions`` model name (default: the first of ``GET /v1/models``). With
    ``tokenizer`` (the one that built the prompts), chunks that carried no server token count are
    counted with it after the run (:func:`.chunk_count.count_chunk_tokens`). ``after_warmup``
    (blocking, run in a thread) is called between the warm-up and the measured requests, e.g. to
    flush the servers' prefix caches so that no measured request finds a warm-up prompt cached.
    """
    base_url = check_base_url(base_url)
    if not prompts:
        raise WorkloadError("No prompts to send: build them with build_prompts(tokenizer, workload).")
    n = len(prompts)
    dialer = Dialer()
    async with Stop(abort).watching() as stop:
        prepared = await stop.first(prepare(dialer, base_url, workload, prompts, rid_prefix, model))
        if prepared is None:  # stopped during the model lookup or the warm-up: nothing sent
            return result_of(workload, [], base_url, [], model, n)
        model, warmup = prepared
        if after_warmup is not None:
            await asyncio.to_thread(after_warmup)
        part = await drive(
            dialer,
            base_url,
            workload,
            prompts,
            range(n),
            arrival_offsets(workload, n),
            workload.concurrency,
            model,
            start_at=None,
            on_progress=on_progress,
            total=n,
            progress_interval_s=progress_interval_s,
            rid_prefix=rid_prefix,
            stop=stop,
        )
    result = result_of(workload, part.records, base_url, warmup, model, part.not_sent, cpu_s=part.cpu_s)
    return counted(result, tokenizer)


def run_async(coro_fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine in a fresh event loop: uvloop's where it is installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro_fn())
    if sys.version_info < (3, 11):  # no asyncio.Runner yet
        return uvloop.run(coro_fn())
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro_fn())
