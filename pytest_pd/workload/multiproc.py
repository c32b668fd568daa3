"""The multi-process client mode (``Workload.client_processes > 1``): the measured requests split
round-robin over that many spawned processes, each with its share of the concurrency cap, all on
one shared schedule started at a common instant; their records merged into one run."""

from __future__ import annotations

import multiprocessing
import queue as queue_mod
import time
from collections.abc import Callable, Sequence
from typing import Any

from .record import RequestRecord
from .result import RunResult
from .runner import (
    CHILD_START_LEAD_S,
    Part,
    ProgressFn,
    arrival_offsets,
    check_base_url,
    drive,
    prepare,
    result_of,
    run_async,
)
from .spec import Prompt, Workload, WorkloadError
from .transport import Dialer


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

        async def go() -> Part:
            return await drive(
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


def run_multiprocess(
    base_url: str,
    workload: Workload,
    prompts: Sequence[Prompt],
    *,
    on_progress: ProgressFn | None,
    progress_interval_s: float | None,
    rid_prefix: str | None,
    model: str | None,
    after_warmup: Callable[[], None] | None = None,
) -> RunResult:
    base_url = check_base_url(base_url)
    if not prompts:
        raise WorkloadError("No prompts to send: build them with build_prompts(tokenizer, workload).")
    procs_n = workload.client_processes
    if procs_n > workload.concurrency:
        raise WorkloadError(
            f"client_processes ({procs_n}) must not exceed the concurrency "
            f"({workload.concurrency}): each process needs a share of the cap."
        )

    async def prep() -> tuple[str | None, list[RequestRecord]]:
        return await prepare(Dialer(), base_url, workload, prompts, rid_prefix, model)

    model, warmup = run_async(prep)
    if after_warmup is not None:
        after_warmup()
    n = len(prompts)
    offsets = arrival_offsets(workload, n)
    caps = _shares(workload.concurrency, procs_n)
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs, conns = [], []
    for k in range(procs_n):
        idx = [i for i in range(n) if (i // workload.turns) % procs_n == k]  # whole conversations
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
    return result_of(workload, records, base_url, warmup, model, not_sent, processes=procs_n, cpu_s=cpu)
