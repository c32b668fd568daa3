"""Drive a workload: warm-up, closed loop (concurrency cap) and open loop (Poisson / gamma
arrivals), duration limit, progress, cancellation, and a multi-process mode.

Timing: ``t_queued`` is when a request is due (its scheduled arrival), ``t_start`` is taken after
its concurrency slot is acquired (bench_serving's definition, so TTFT excludes client queueing;
the queueing is reported separately).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import math
import multiprocessing
import os
import queue as queue_mod
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import numpy as np

from .client import encode_body, fetch_model_id, request_payload, send_request
from .prompts import API_COMPLETIONS, WARMUP_OUTPUT_LEN, Prompt, Workload, WorkloadError
from .record import ABORTED, RequestRecord
from .transport import Dialer

__all__ = [
    "RequestRecord",
    "RunResult",
    "ProgressFn",
    "run_workload",
    "run_workload_sync",
    "arrival_offsets",
    "run_async",
    "AbortFn",
]

ProgressFn = Callable[[int, int, int, int], Any]
"""on_progress(done, total, output_tokens, failed), called after each measured request (and, with
``progress_interval_s``, periodically with the tokens streamed so far, in-flight ones included)."""
AbortFn = Callable[[], "str | None"]
"""abort() -> a reason to stop the run now, or None; asked every ``ABORT_POLL_S``, must not block."""
ABORT_POLL_S = 0.25

MODEL_LOOKUP_TIMEOUT_S = 60.0
CHILD_START_LEAD_S = 0.2
STARTS_PER_TURN = 4
T = TypeVar("T")


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
    not_sent: int = 0
    """Requests never sent because the duration limit was reached."""
    client_processes: int = 1
    client_cpu_s: float | None = None
    """CPU seconds the client used while driving the measured requests (all processes)."""

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
            "not_sent": self.not_sent,
            "client_processes": self.client_processes,
            "client_cpu_s": self.client_cpu_s,
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
            not_sent=int(data.get("not_sent", 0)),
            client_processes=int(data.get("client_processes", 1)),
            client_cpu_s=data.get("client_cpu_s"),
        )


def arrival_offsets(workload: Workload, n: int) -> np.ndarray:
    """Seconds after the first dispatch at which each request is scheduled.

    Infinite rate: all at 0 (closed loop: the concurrency cap paces them). Finite rate: gaps drawn
    from a gamma distribution with shape ``burstiness`` and mean ``1/request_rate`` (shape 1 is a
    Poisson process), seeded by ``workload.seed``; the first request goes at 0.
    """
    if math.isinf(workload.request_rate) or n == 0:
        return np.zeros(n)
    rng = np.random.default_rng([workload.seed, 1])  # independent of the prompt stream
    shape = float(workload.burstiness)
    gaps = rng.gamma(shape, 1.0 / (workload.request_rate * shape), size=n)
    return np.concatenate(([0.0], np.cumsum(gaps[:-1])))


def _check_base_url(base_url: str) -> str:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WorkloadError(
            f"Base URL {base_url!r} is not an http(s) URL with a host, e.g. "
            "'http://127.0.0.1:8000' (the router's address)."
        )
    return base_url.rstrip("/")


async def _prepare(
    dialer: Dialer,
    base_url: str,
    workload: Workload,
    prompts: Sequence[Prompt],
    rid_prefix: str | None,
    model: str | None = None,
) -> tuple[str | None, list[RequestRecord]]:
    """Model id (for /v1/completions) and the warm-up requests, one after the other."""
    api = workload.api
    timeout_s = float(workload.request_timeout_s)
    if api == API_COMPLETIONS and not model:
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
            dialer, base_url, api, p, rec, max_tokens=WARMUP_OUTPUT_LEN, timeout_s=timeout_s, model=model
        )
        warmup.append(rec)
    return model, warmup


class _Pacer:
    """Lets at most ``per_turn`` requests start per event-loop iteration; the others wait for
    the next iterations, in order. A wave of a thousand request set-ups (closed loop: every
    stream's next request starts when the last one ends) then never holds up the loop's socket
    reads for long, so the chunks of running streams are stamped when they arrive."""

    def __init__(self, per_turn: int) -> None:
        self.loop = asyncio.get_running_loop()
        self.per_turn = per_turn
        self.left = per_turn
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self.armed = False

    async def turn(self) -> None:
        if self.left > 0 and not self.waiters:
            self.left -= 1
            self._arm()
            return
        fut = self.loop.create_future()
        self.waiters.append(fut)
        self._arm()
        await fut

    def _arm(self) -> None:
        if not self.armed:
            self.armed = True
            self.loop.call_soon(self._next_turn)  # runs in the next loop iteration

    def _next_turn(self) -> None:
        self.armed = False
        self.left = self.per_turn
        while self.left > 0 and self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():  # cancelled waiters give their turn away
                fut.set_result(None)
                self.left -= 1
        if self.waiters or self.left < self.per_turn:
            self._arm()


class _Stop:
    """A run's early stop: while ``watching``, ``abort`` is asked every ``ABORT_POLL_S``; once it
    gives a reason, ``reason`` is set, ``sleep`` and ``first`` return early and every ``on_stop``
    callback runs. Without ``abort`` it never fires."""

    def __init__(self, abort: AbortFn | None) -> None:
        self.abort = abort
        self.reason: str | None = None
        self.event = asyncio.Event()
        self.on_stop: list[Callable[[str], None]] = []

    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[_Stop]:
        poll = asyncio.create_task(self._poll()) if self.abort is not None else None
        try:
            yield self
        finally:
            if poll is not None:
                poll.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poll  # an exception of abort() itself surfaces here

    async def _poll(self) -> None:
        assert self.abort is not None
        while True:
            await asyncio.sleep(ABORT_POLL_S)
            reason = self.abort()
            if reason:
                self.reason = reason
                self.event.set()
                for callback in self.on_stop:
                    callback(reason)
                return

    async def sleep(self, delay: float) -> None:
        if self.abort is None:  # nothing can stop it: a plain timer on the dispatch path
            await asyncio.sleep(delay)
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.event.wait(), delay)

    async def first(self, coro: Coroutine[Any, Any, T]) -> T | None:
        """``coro``'s result, or None (``coro`` cancelled) if the run is stopped first."""
        task = asyncio.ensure_future(coro)
        stopped = asyncio.ensure_future(self.event.wait())
        try:
            await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return None


@dataclass
class _Part:
    records: list[RequestRecord]
    not_sent: int
    cpu_s: float = 0.0


async def _drive(
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
    stop: _Stop | None = None,
) -> _Part:
    """Send ``prompts[i]`` for ``i`` in ``indices`` at ``start_at + offsets[k]`` under a cap of
    ``concurrency`` requests in flight. Once ``stop`` fires, nothing more is sent and requests in
    flight end as ``aborted`` with its reason."""
    stop = stop or _Stop(None)
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
    sent = [False] * len(records)
    sem = asyncio.Semaphore(concurrency)
    counters = {"done": 0, "failed": 0, "tokens": 0}
    perf = time.perf_counter
    stop_at = math.inf
    pacer = _Pacer(STARTS_PER_TURN)

    async def one(k: int) -> None:
        rec = records[k]
        prompt = prompts[rec.index]
        async with sem:
            await pacer.turn()
            if perf() >= stop_at or stop.reason:
                return  # the duration limit passed (or the run stopped) while it waited: never sent
            body = encode_body(
                request_payload(api, prompt, max_tokens=prompt.output_len, model=model, rid=rec.rid)
            )
            sent[k] = True
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
            )
        counters["done"] += 1
        if rec.error_kind is None:
            counters["tokens"] += rec.completion_tokens or 0
        else:
            counters["failed"] += 1
        if on_progress is not None:
            on_progress(counters["done"], total, counters["tokens"], counters["failed"])

    async def ticker() -> None:
        assert progress_interval_s is not None and on_progress is not None
        while True:
            await asyncio.sleep(progress_interval_s)
            streamed = sum(r.completion_tokens or 0 for r in records if r.error_kind is None)
            on_progress(counters["done"], total, streamed, counters["failed"])

    tasks: list[asyncio.Task[None]] = []  # tasks[k] sends records[k]

    def abort_in_flight(reason: str) -> None:
        for k, task in enumerate(tasks):
            if not task.done():
                if sent[k]:
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
        for k in range(len(records)):
            due = t0 + float(offsets[k])
            if due >= stop_at or stop.reason:
                break
            delay = due - perf()
            if delay > 0:
                await stop.sleep(delay)
            if perf() >= stop_at or stop.reason:
                break
            records[k].t_queued = max(due, t0)
            tasks.append(asyncio.create_task(one(k)))
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
    return _Part(kept, len(records) - len(kept), time.process_time() - cpu0)


def _result(
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
) -> RunResult:
    """Send ``prompts`` to ``base_url`` as ``workload`` says and record every request, in this
    event loop (one process; see :func:`run_workload_sync` for ``client_processes > 1``).

    Warm-up requests (the first prompts, 16 output tokens each) run first, one after the other,
    and are kept apart in ``RunResult.warmup``. Measured requests are scheduled by arrival time and
    run under a cap of ``workload.concurrency`` in flight. Request failures are recorded, not
    raised; cancellation cancels every in-flight request. ``rid_prefix`` sends ``rid`` =
    ``{rid_prefix}-{index}`` with each request (to match server-side traces). ``model`` is the
    ``/v1/completions`` model name (default: the first of ``GET /v1/models``).
    """
    base_url = _check_base_url(base_url)
    if not prompts:
        raise WorkloadError("No prompts to send: build them with build_prompts(tokenizer, workload).")
    n = len(prompts)
    dialer = Dialer()
    async with _Stop(abort).watching() as stop:
        prepared = await stop.first(_prepare(dialer, base_url, workload, prompts, rid_prefix, model))
        if prepared is None:  # stopped during the model lookup or the warm-up: nothing sent
            return _result(workload, [], base_url, [], model, n)
        model, warmup = prepared
        part = await _drive(
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
    return _result(workload, part.records, base_url, warmup, model, part.not_sent, cpu_s=part.cpu_s)


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


def run_workload_sync(
    base_url: str,
    workload: Workload,
    prompts: Sequence[Prompt],
    *,
    on_progress: ProgressFn | None = None,
    progress_interval_s: float | None = None,
    rid_prefix: str | None = None,
    model: str | None = None,
    abort: AbortFn | None = None,
) -> RunResult:
    """:func:`run_workload` in a fresh (uvloop) event loop, for callers without one; with
    ``workload.client_processes > 1`` the measured requests are split round-robin over that many
    client processes (each with its share of the concurrency cap, all on one shared schedule) and
    their records merged. ``abort`` (see :func:`_drive`) works in the one-process mode only."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise WorkloadError(
            "run_workload_sync() was called from inside a running event loop; "
            "use 'await run_workload(...)' there instead."
        )
    if workload.client_processes <= 1:
        return run_async(
            lambda: run_workload(
                base_url,
                workload,
                prompts,
                on_progress=on_progress,
                progress_interval_s=progress_interval_s,
                rid_prefix=rid_prefix,
                model=model,
                abort=abort,
            )
        )
    return _run_multiprocess(
        base_url,
        workload,
        prompts,
        on_progress=on_progress,
        progress_interval_s=progress_interval_s,
        rid_prefix=rid_prefix,
        model=model,
    )


# ---------------------------------------------------------------------------------------------
# Multi-process mode
# ---------------------------------------------------------------------------------------------


def _shares(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if k < total % parts else 0) for k in range(parts)]


def _child_main(args: dict[str, Any], out: Any, start_conn: Any) -> None:
    """One client process: wait for the common start time, drive its share, send its records."""
    k = args["k"]
    try:

        def progress(done: int, total: int, tokens: int, failed: int) -> None:
            out.put(("progress", k, done, tokens, failed))

        out.put(("ready", k))
        start_at = start_conn.recv()

        async def go() -> _Part:
            return await _drive(
                Dialer(),
                args["base_url"],
                args["workload"],
                args["prompts"],
                args["indices"],
                args["offsets"],
                args["concurrency"],
                args["model"],
                start_at=start_at,
                on_progress=progress,
                total=args["total"],
                progress_interval_s=args["progress_interval_s"],
                rid_prefix=args["rid_prefix"],
            )

        part = run_async(go)
        out.put(("result", k, [r.to_dict() for r in part.records], part.not_sent, part.cpu_s))
    except BaseException as exc:  # noqa: BLE001 - report anything to the parent
        out.put(("error", k, f"{type(exc).__name__}: {exc}"))


def _run_multiprocess(
    base_url: str,
    workload: Workload,
    prompts: Sequence[Prompt],
    *,
    on_progress: ProgressFn | None,
    progress_interval_s: float | None,
    rid_prefix: str | None,
    model: str | None,
) -> RunResult:
    base_url = _check_base_url(base_url)
    if not prompts:
        raise WorkloadError("No prompts to send: build them with build_prompts(tokenizer, workload).")
    procs_n = workload.client_processes
    if procs_n > workload.concurrency:
        raise WorkloadError(
            f"client_processes ({procs_n}) must not exceed the concurrency "
            f"({workload.concurrency}): each process needs a share of the cap."
        )

    async def prep() -> tuple[str | None, list[RequestRecord]]:
        return await _prepare(Dialer(), base_url, workload, prompts, rid_prefix, model)

    model, warmup = run_async(prep)
    n = len(prompts)
    offsets = arrival_offsets(workload, n)
    caps = _shares(workload.concurrency, procs_n)
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs, conns = [], []
    for k in range(procs_n):
        idx = list(range(k, n, procs_n))
        sub = {i: prompts[i] for i in idx}
        args = {
            "k": k,
            "base_url": base_url,
            "workload": workload,
            "prompts": sub,
            "indices": idx,
            "offsets": offsets[idx],
            "concurrency": caps[k],
            "model": model,
            "total": n,
            "progress_interval_s": progress_interval_s,
            "rid_prefix": rid_prefix,
        }
        parent_conn, child_conn = ctx.Pipe()
        p = ctx.Process(
            target=_child_main, args=(args, out, child_conn), daemon=True, name=f"pytest-pd-client-{k}"
        )
        p.start()
        procs.append(p)
        conns.append(parent_conn)
    state = {k: (0, 0, 0) for k in range(procs_n)}  # done, tokens, failed per process
    results: dict[int, tuple[list[dict[str, Any]], int, float]] = {}
    ready: set[int] = set()
    try:
        while len(results) < procs_n:
            try:
                msg = out.get(timeout=1.0)
            except queue_mod.Empty:
                dead = [p for k, p in enumerate(procs) if k not in results and not p.is_alive()]
                if dead:
                    raise WorkloadError(
                        f"client process {dead[0].name} exited with code {dead[0].exitcode} "
                        "before sending its results."
                    ) from None
                continue
            kind, k = msg[0], msg[1]
            if kind == "ready":
                ready.add(k)
                if len(ready) == procs_n:
                    start_at = time.perf_counter() + CHILD_START_LEAD_S
                    for c in conns:
                        c.send(start_at)
            elif kind == "progress":
                state[k] = (msg[2], msg[3], msg[4])
                if on_progress is not None:
                    done, tokens, failed = (sum(v[i] for v in state.values()) for i in range(3))
                    on_progress(done, n, tokens, failed)
            elif kind == "result":
                results[k] = (msg[2], msg[3], msg[4])
            else:
                raise WorkloadError(f"client process {k} failed: {msg[2]}")
    finally:
        for p in procs:
            p.join(timeout=5.0)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5.0)
        for c in conns:
            c.close()
        out.close()
    records = [RequestRecord.from_dict(d) for recs, _, _ in results.values() for d in recs]
    not_sent = sum(ns for _, ns, _ in results.values())
    cpu = sum(c for _, _, c in results.values())
    return _result(workload, records, base_url, warmup, model, not_sent, processes=procs_n, cpu_s=cpu)


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
