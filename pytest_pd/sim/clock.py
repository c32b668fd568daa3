"""The worker's clocks: wall time (the event loop's, ``time.monotonic``), model time (what the
simulated cluster would take: wall time since start × speedup) and Unix time for SGLang's
``*_ts`` fields."""

from __future__ import annotations

import asyncio
import time


class Clock:
    def __init__(self, speedup: float) -> None:
        self.speedup = speedup
        self.loop: asyncio.AbstractEventLoop | None = None
        self.epoch = 0.0
        self.unix_offset = 0.0  # time.time() - loop time

    def start(self) -> None:
        """Model time 0 is now; call from the running event loop."""
        self.loop = asyncio.get_running_loop()
        self.epoch = self.now()
        self.unix_offset = time.time() - self.epoch

    def now(self) -> float:
        assert self.loop is not None
        return self.loop.time()

    def to_model(self, wall: float) -> float:
        return (wall - self.epoch) * self.speedup

    def to_wall(self, model_t: float) -> float:
        return self.epoch + model_t / self.speedup

    def unix(self, t: float) -> float:
        """Loop time → Unix time (SGLang's ``*_ts`` and ``forward_entry_time`` fields)."""
        return t + self.unix_offset

    async def sleep_until(self, wall: float) -> None:
        delay = wall - self.now()
        if delay > 0:
            await asyncio.sleep(delay)
