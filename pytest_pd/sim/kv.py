"""KV hand-off between a prefill and a decode worker, paired by the router's ``bootstrap_room``.

The prefill marks a room's KV ready when its compute is done and answers the long poll
``GET /sim/kv/{room}`` on its bootstrap port (:class:`KvRooms`); the decode fetches it there, as
SGLang's decode contacts its prefill's bootstrap server, and adds the modelled transfer time
(:class:`KvFetcher`)."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any

from aiohttp import ClientSession, ClientTimeout, web

from pytest_pd.sim import model
from pytest_pd.sim.clock import Clock
from pytest_pd.sim.metrics import SimMetrics
from pytest_pd.sim.model import SimParams
from pytest_pd.sim.request import Req
from pytest_pd.sim.wire import openai_error

KV_KEEP = 16384


class KvRooms:
    """Prefill side: the rooms whose KV is computed (the last ``KV_KEEP``), and the decodes
    waiting for one."""

    def __init__(self, params: SimParams, pp: int, clock: Clock, metrics: SimMetrics) -> None:
        self.params = params
        self.pp = pp
        self.clock = clock
        self.metrics = metrics
        self.ready_rooms: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.waiters: dict[str, list[asyncio.Future[dict[str, Any]]]] = {}

    def ready(self, room: str, prompt_tokens: int, at: float) -> None:
        info = {"room": room, "prompt_tokens": prompt_tokens, "ready_at": at}
        self.ready_rooms[room] = info
        while len(self.ready_rooms) > KV_KEEP:
            self.ready_rooms.popitem(last=False)
        for fut in self.waiters.pop(room, []):
            if not fut.done():
                fut.set_result(info)

    async def handle(self, request: web.Request) -> web.Response:
        """``GET /sim/kv/{room}``: answers once that room's KV is ready."""
        assert self.clock.loop is not None
        room = request.match_info["room"]
        info = self.ready_rooms.get(room)
        if info is None:
            fut: asyncio.Future[dict[str, Any]] = self.clock.loop.create_future()
            self.waiters.setdefault(room, []).append(fut)
            try:
                info = await asyncio.wait_for(fut, self.params.bootstrap_timeout_s)
            except asyncio.TimeoutError:
                return openai_error(
                    504,
                    f"KV of bootstrap room {room} not ready after {self.params.bootstrap_timeout_s} s",
                    "Timeout",
                )
            finally:
                lst = self.waiters.get(room)
                if lst is not None and fut in lst:
                    lst.remove(fut)
                    if not lst:
                        del self.waiters[room]
        tokens = int(info["prompt_tokens"])
        self.metrics.kv_transfer(
            model.kv_transfer_time(self.params, tokens, self.pp), tokens * self.params.kv_bytes_per_token
        )
        return web.json_response(info)


class KvFetcher:
    """Decode side: fetch a request's KV from its prefill's bootstrap server."""

    def __init__(
        self, params: SimParams, prefill_pp: int, default_port: int, clock: Clock, metrics: SimMetrics
    ) -> None:
        self.params = params
        self.prefill_pp = prefill_pp
        self.default_port = default_port
        self.clock = clock
        self.metrics = metrics
        self.waiting = 0  # requests waiting for their KV
        self.session: ClientSession | None = None

    def start(self) -> None:
        self.session = ClientSession(timeout=ClientTimeout(total=self.params.bootstrap_timeout_s + 10))

    async def stop(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def fetch(self, r: Req, host: str, port: Any) -> None:
        """Wait until ``r``'s KV is ready at its prefill, then for the transfer; sets
        ``r.prefill_done`` and ``r.kv_arrived``. RuntimeError when the bootstrap fails."""
        assert self.session is not None
        clock = self.clock
        if port in (None, ""):
            port = self.default_port
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        url = f"http://{host}:{int(port)}/sim/kv/{r.room}"
        asked = clock.now()
        self.waiting += 1
        try:
            async with self.session.get(url) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"bootstrap {url} answered HTTP {resp.status}")
                await resp.read()
        except Exception as e:  # noqa: BLE001 - any bootstrap failure aborts the request
            self.metrics.failed("bootstrap")
            raise RuntimeError(f"KV bootstrap failed for room {r.room}: {e}") from None
        finally:
            self.waiting -= 1
        ready = clock.now()
        r.prefill_done = ready
        self.metrics.kv_bootstrap_ms.observe(self.metrics.model_seconds(ready - asked) * 1000.0)
        self.metrics.kv_alloc_ms.observe(0.0)
        transfer = model.kv_transfer_time(self.params, r.prompt_tokens, self.prefill_pp)
        arrive = ready + transfer / clock.speedup
        self.metrics.kv_transfer(transfer, r.prompt_tokens * self.params.kv_bytes_per_token)
        await clock.sleep_until(arrive)
        r.kv_arrived = arrive
        self.metrics.kv_received(self.metrics.model_seconds(arrive - asked))
