"""The worker's two engine loops, paced in wall time over the pure timing model
(:mod:`pytest_pd.sim.model`): chunked prefill batches through a ``pp``-stage pipeline, and
continuous-batching decode steps that emit one token to every running request."""

from __future__ import annotations

import asyncio
import itertools
from collections import deque

from pytest_pd.sim import model
from pytest_pd.sim.clock import Clock
from pytest_pd.sim.metrics import SimMetrics
from pytest_pd.sim.model import SimParams
from pytest_pd.sim.request import Req


class Scheduler:
    def __init__(
        self, params: SimParams, shape: model.ServerShape, clock: Clock, metrics: SimMetrics
    ) -> None:
        self.params = params
        self.tp = shape.tp
        self.clock = clock
        self.metrics = metrics
        self.time_factor = 1.0  # > 1 under `fault: slow`
        self.tasks: list[asyncio.Task[None]] = []
        # prefill
        self.prefill = model.PrefillScheduler(params, shape.tp, shape.pp, shape.chunked_prefill_size)
        self.prefill_futs: dict[int, asyncio.Future[float]] = {}
        self.prefill_arrival: dict[int, float] = {}  # model time
        self.forward_entry: dict[int, float] = {}  # model time its first chunk entered a batch
        self.prefill_wake = asyncio.Event()
        self.prefill_keys = itertools.count()
        # decode
        self.max_running = model.max_running(params, shape)
        self.waiting: deque[Req] = deque()
        self.running: list[Req] = []
        self.decode_wake = asyncio.Event()

    def start(self) -> None:
        self.tasks.append(asyncio.create_task(self.prefill_loop()))
        self.tasks.append(asyncio.create_task(self.decode_loop()))

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass

    def queued(self) -> int:
        """Requests waiting for prefill or for a place in the decode batch."""
        return len(self.waiting) + len(self.prefill.queue)

    def used_tokens(self) -> int:
        return sum(r.ctx for r in self.running)

    def idle(self) -> bool:
        return not (self.running or self.waiting or self.prefill.has_work())

    # -- prefill ---------------------------------------------------------------------------
    async def run_prefill(self, r: Req) -> float:
        """Run ``r``'s prefill; the wall time it finished (stretched under ``fault: slow``)."""
        done = await self.submit_prefill(r.prompt_tokens, r.arrival, r.cached)
        if self.time_factor != 1.0:
            done += (done - r.arrival) * (self.time_factor - 1.0)
            await self.clock.sleep_until(done)
        return done

    def submit_prefill(self, tokens: int, arrival: float, cached: int = 0) -> asyncio.Future[float]:
        """Queue a prefill that arrived at wall time ``arrival`` (before parsing/tokenizing),
        its first ``cached`` tokens found in the prefix cache; the future resolves to the wall
        time its compute finished."""
        assert self.clock.loop is not None
        key = next(self.prefill_keys)
        fut: asyncio.Future[float] = self.clock.loop.create_future()
        self.prefill_futs[key] = fut
        self.prefill_arrival[key] = self.clock.to_model(arrival)
        self.prefill.submit(key, tokens, cached)
        self.prefill_wake.set()
        return fut

    def _prefill_finish(self, key: int, wall: float, done_at: float) -> None:
        fut = self.prefill_futs.pop(key, None)
        arrival = self.prefill_arrival.pop(key, None)
        entry = self.forward_entry.pop(key, None)
        if arrival is not None and entry is not None:
            self.metrics.prefill_finished(max(0.0, entry - arrival), done_at - entry)
        if fut is not None and not fut.done():
            fut.set_result(wall)

    async def prefill_loop(self) -> None:
        clock, sched = self.clock, self.prefill
        assert clock.loop is not None
        while True:
            if not sched.has_work():
                self.prefill_wake.clear()
                await self.prefill_wake.wait()
                # let requests arriving in the same instant join this batch
                await asyncio.sleep(0)
                continue
            free = clock.to_wall(sched.stage0_free_at)
            if free > clock.now():
                await clock.sleep_until(free)
                continue
            head_key = sched.queue[0].key
            head_arrival = self.prefill_arrival.get(head_key, 0.0)
            # Requests that reach an idle prefill within arrival_window_s (wall) of each other
            # batch as if they arrived together: client and router dispatch spread them by a few
            # ms, which the speedup would otherwise magnify into seconds of model time.
            gather_until = clock.to_wall(head_arrival) + self.params.arrival_window_s
            if head_arrival >= sched.stage0_free_at and gather_until > clock.now():
                await clock.sleep_until(gather_until)
                continue
            # absolute time: the batch logically forms when stage 0 frees or its head arrived
            form = max(sched.stage0_free_at, head_arrival)
            form = min(form, clock.to_model(clock.now()))
            batch = sched.next_batch(form)
            if batch is None:  # pragma: no cover - defensive
                await asyncio.sleep(0.001)
                continue
            for key, _, _ in batch.pieces:
                self.forward_entry.setdefault(key, batch.start)
            done_wall = clock.to_wall(batch.done_at)
            for key in batch.finished:
                clock.loop.call_at(done_wall, self._prefill_finish, key, done_wall, batch.done_at)

    # -- decode ----------------------------------------------------------------------------
    def join_decode(self, r: Req) -> None:
        self.waiting.append(r)
        self.decode_wake.set()

    async def decode_loop(self) -> None:
        params, tp, clock = self.params, self.tp, self.clock
        running, waiting = self.running, self.waiting
        step_start: float | None = None
        while True:
            while waiting and len(running) < self.max_running:
                r = waiting.popleft()
                if not r.cancelled:
                    running.append(r)
            if not running:
                step_start = None
                self.decode_wake.clear()
                await self.decode_wake.wait()
                continue
            if step_start is None:
                step_start = clock.now()
            b = len(running)
            mean_ctx = sum(r.ctx for r in running) / b
            step = model.decode_step_time(params, b, mean_ctx, tp) * self.time_factor
            deadline = step_start + step / clock.speedup
            await clock.sleep_until(deadline)
            t = clock.now()
            keep = []
            streamed = 0
            for r in running:
                if r.cancelled:
                    continue
                r.emit(t)
                streamed += r.streaming
                if r.done:
                    self.finished(r, t)
                else:
                    keep.append(r)
            running[:] = keep
            self.metrics.decode_step(streamed, b - streamed, step)
            step_start = deadline  # absolute: never accumulate sleep drift; catch up if behind

    def finished(self, r: Req, t: float) -> None:
        ttft = (r.first_token_at or t) - r.arrival
        self.metrics.request_finished(r.streaming, t - r.arrival, ttft, r.emitted)
