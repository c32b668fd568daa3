"""The worker's HTTP servers: its routes, the prefill's bootstrap server, and serving both until
SIGTERM / SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage

from pytest_pd.sim import faults
from pytest_pd.sim.info_api import InfoAPI
from pytest_pd.sim.log import log
from pytest_pd.sim.model import SimParams
from pytest_pd.sim.openai_api import OpenAIAPI
from pytest_pd.sim.sglang_api import SGLangAPI
from pytest_pd.sim.worker import SimWorker


def worker_app(worker: SimWorker) -> web.Application:
    info, sglang, openai = InfoAPI(worker), SGLangAPI(worker), OpenAIAPI(worker)
    app = web.Application(client_max_size=64 * 1024 * 1024)
    g, p = app.router.add_get, app.router.add_post
    g("/health", info.health)
    g("/health_generate", info.health)
    g("/get_model_info", info.model_info)
    g("/model_info", info.model_info)
    g("/get_server_info", info.server_info)
    g("/server_info", info.server_info)
    g("/v1/models", info.models)
    g("/get_load", info.load)
    g("/metrics", info.metrics)
    g("/sim/trace", info.trace)
    g("/flush_cache", info.flush_cache)
    p("/flush_cache", info.flush_cache)
    p("/generate", sglang.generate)
    p("/v1/completions", openai.completions)
    p("/v1/chat/completions", openai.chat)
    if worker.role == "prefill":
        g("/sim/kv/{room}", worker.kv_rooms.handle)
    return app


def bootstrap_app(worker: SimWorker) -> web.Application:
    """The prefill's bootstrap server (``--disaggregation-bootstrap-port``)."""
    app = web.Application()
    app.router.add_get("/sim/kv/{room}", worker.kv_rooms.handle)
    app.router.add_get("/health", InfoAPI(worker).health)
    return app


class _ProbeFilter(logging.Filter):
    """sglang-router probes workers with an HTTP/2 preface first; aiohttp answers 400 and logs a
    traceback per probe. Drop those records and say so once."""

    said = False

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, BadHttpMessage):
            if not _ProbeFilter.said:
                _ProbeFilter.said = True
                log("answered a non-HTTP/1.1 request (e.g. the router's HTTP/2 probe) with 400")
            return False
        return True


async def serve(args: argparse.Namespace, params: SimParams) -> None:
    logging.getLogger("aiohttp.server").addFilter(_ProbeFilter())
    worker = SimWorker(args, params)
    worker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runners: list[web.AppRunner] = []
    try:
        runner = web.AppRunner(
            worker_app(worker), access_log=None, handle_signals=False, shutdown_timeout=0.5
        )
        await runner.setup()
        runners.append(runner)
        # SGLang's uvicorn listens with a backlog of 2048; aiohttp's default of 128 drops SYNs
        # when hundreds of streams connect at once (each costs a 1 s retransmit)
        await web.TCPSite(runner, args.host, args.port, reuse_address=True, backlog=2048).start()
        if worker.role == "prefill":
            brunner = web.AppRunner(bootstrap_app(worker), access_log=None, shutdown_timeout=0.5)
            await brunner.setup()
            runners.append(brunner)
            await web.TCPSite(
                brunner, args.host, args.disaggregation_bootstrap_port, reuse_address=True
            ).start()
        boot = f" bootstrap_port={args.disaggregation_bootstrap_port}" if worker.role == "prefill" else ""
        log(
            f"ready role={worker.role} host={args.host} port={args.port}{boot} "
            f"tp={args.tp_size} pp={args.pp_size} prefill_pp={args.disaggregation_prefill_pp} "
            f"chunked_prefill_size={args.chunked_prefill_size} speedup={params.speedup:g} "
            f"model={worker.files.model_path} pid={os.getpid()}"
        )
        await faults.crash_at_start(params)
        await stop.wait()
        log("shutting down")
    finally:
        await worker.stop()
        for r in reversed(runners):
            try:
                await asyncio.wait_for(r.cleanup(), 1.0)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001
                pass
