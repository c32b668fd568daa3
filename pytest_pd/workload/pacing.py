"""Pacing a run's request starts and stopping a run early: small event-loop helpers the runner
drives its requests with."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
AbortFn = Callable[[], "str | None"]
"""abort() -> a reason to stop the run now, or None; asked every ``ABORT_POLL_S``, must not block."""
ABORT_POLL_S = 0.25


class Pacer:
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


class Stop:
    """A run's early stop: while ``watching``, ``abort`` is asked every ``ABORT_POLL_S``; once it
    gives a reason, ``reason`` is set, ``sleep`` and ``first`` return early and every ``on_stop``
    callback runs. Without ``abort`` it never fires."""

    def __init__(self, abort: AbortFn | None) -> None:
        self.abort = abort
        self.reason: str | None = None
        self.event = asyncio.Event()
        self.on_stop: list[Callable[[str], None]] = []

    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[Stop]:
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
