"""Run a workload from code that has no event loop (the suites' measurer, ``pytest-pd bench``): in
one process on a fresh (uvloop) loop, or split over several client processes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from .chunk_count import counted
from .multiproc import run_multiprocess
from .pacing import AbortFn
from .result import RunResult
from .runner import ProgressFn, run_async, run_workload
from .spec import Prompt, Workload, WorkloadError


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
    tokenizer: Any = None,
    after_warmup: Callable[[], None] | None = None,
) -> RunResult:
    """:func:`run_workload` in a fresh (uvloop) event loop, for callers without one; with
    ``workload.client_processes > 1`` the measured requests are split round-robin over that many
    client processes (each with its share of the concurrency cap, all on one shared schedule) and
    their records merged. ``abort`` (see :func:`drive`) works in the one-process mode only."""
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
                tokenizer=tokenizer,
                after_warmup=after_warmup,
            )
        )
    result = run_multiprocess(
        base_url,
        workload,
        prompts,
        on_progress=on_progress,
        progress_interval_s=progress_interval_s,
        rid_prefix=rid_prefix,
        model=model,
        after_warmup=after_warmup,
    )
    return counted(result, tokenizer)
