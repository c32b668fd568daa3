"""Faults on demand (``--sim-fault``): what each one does to an affected request, a stream, or
the worker's start. Which requests are affected is :func:`pytest_pd.sim.model.fault_strikes`."""

from __future__ import annotations

import asyncio
import os
import signal

from aiohttp import web

from pytest_pd.sim.log import log
from pytest_pd.sim.model import SimParams
from pytest_pd.sim.request import Req
from pytest_pd.sim.scheduler import Scheduler
from pytest_pd.sim.wire import openai_error


async def before_work(r: Req, params: SimParams, scheduler: Scheduler) -> web.Response | None:
    """Faults that strike before any work: crash, hang, error (its response); ``slow`` slows
    the scheduler from this request on."""
    if r.fault == "crash":
        log(f"simulated fault: crash (SIGKILL) on request {r.rid}")
        os.kill(os.getpid(), signal.SIGKILL)
    if r.fault == "hang":
        log(f"simulated fault: hang on request {r.rid}")
        await asyncio.Event().wait()  # until the client gives up and disconnects
    if r.fault == "error":
        status = params.fault_status
        log(f"simulated fault: HTTP {status} on request {r.rid}")
        return openai_error(status, f"simulated fault: HTTP {status}", "InternalServerError")
    if r.fault == "slow" and scheduler.time_factor == 1.0:
        log(f"simulated fault: from request {r.rid} on, every model time × {params.fault_slowdown:g}")
        scheduler.time_factor = params.fault_slowdown
    return None


def cut_here(request: web.Request, r: Req, params: SimParams) -> bool:
    """``fault: drop`` strikes once ``fault_drop_after_tokens`` were streamed: abort the
    connection mid-body (the client sees a stream that just ends)."""
    if r.fault != "drop" or r.emitted < params.fault_drop_after_tokens:
        return False
    log(f"simulated fault: dropping the stream of request {r.rid} after {r.emitted} tokens")
    r.cancelled = True
    if request.transport is not None:
        request.transport.abort()
    return True


async def maybe_malformed(resp: web.StreamResponse, r: Req, params: SimParams) -> None:
    """``fault: malformed``: one data line that is not JSON, once, then the stream goes on."""
    if r.fault == "malformed" and r.emitted >= params.fault_drop_after_tokens:
        log(f"simulated fault: malformed SSE line in request {r.rid}")
        r.fault = ""
        await resp.write(b'data: {"text": "unterminated\n\n')


async def crash_at_start(params: SimParams) -> None:
    """``fault: crash_at_start``: exit with code 3 right after starting."""
    if params.fault == "crash_at_start":
        await asyncio.sleep(max(params.startup_delay_s, 0.2))
        log("simulated fault: crash during start-up (exit code 3)")
        os._exit(3)
