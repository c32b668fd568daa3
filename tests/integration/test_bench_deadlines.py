"""`pytest-pd bench` against a server that answers every request a byte a second: the command ends
within the time the user gave (``--request-timeout``), whatever it was asking when the server
stalled: the model look-up, the API probe, the warm-up or the measured requests. (Seen before
this held: `--request-timeout 10 --parallel 2 --number 4` still running after 90 s.)"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from tests.helpers import SIM_MODEL

REQUEST_TIMEOUT_S = 1.5
# Each of the phases above may wait up to the request timeout (the model look-up, the probe, the
# warm-up, then the measured requests in one batch), plus the interpreter's start: far under the
# 90 s this ran for, and the test says how long it took.
BOUND_S = 6 * REQUEST_TIMEOUT_S + 15


class Trickler:
    """Answers any request with a 200 head, then one byte of body a second, forever; counts what
    it was asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.port = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            self.asked.append(line.decode(errors="replace").strip())
            while (await reader.readline()) not in (b"\r\n", b""):
                pass
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
            while True:
                writer.write(b" ")
                await writer.drain()
                await asyncio.sleep(1.0)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def shutdown(self) -> None:
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()


@pytest.fixture
def trickler() -> Iterator[Trickler]:
    t = Trickler()
    thread = threading.Thread(target=t.run, daemon=True)
    thread.start()
    t.ready.wait(10)
    yield t
    asyncio.run_coroutine_threadsafe(t.shutdown(), t.loop).result(10)
    t.loop.call_soon_threadsafe(t.loop.stop)
    thread.join(10)


@pytest.mark.parametrize(
    ("api", "model"),
    [(None, "sim-tiny"), ("completions", None), ("completions", "sim-tiny")],
    ids=["api-probed", "model-looked-up", "measured"],
)
def test_bench_ends_within_the_request_timeout_against_a_byte_a_second_server(trickler, api, model, tmp_path):
    argv = [
        sys.executable, "-m", "pytest_pd.cli", "bench",
        "--port", str(trickler.port), "--tokenizer-path", str(SIM_MODEL),
        "--request-timeout", str(REQUEST_TIMEOUT_S), "--parallel", "2", "--number", "4",
        "--input-length", "64", "--output-length", "8",
        "--results-dir", str(tmp_path), "--no-progress",
        *(["--api", api] if api else []), *(["--model", model] if model else []),
    ]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    took = time.monotonic() - started
    text = done.stdout + done.stderr
    print(f"ended after {took:.1f} s (exit {done.returncode}); asked: {trickler.asked}\n{text[-1500:]}")
    assert took < BOUND_S, text
    assert done.returncode != 0, text
    assert f"within {REQUEST_TIMEOUT_S:g} s" in text, text
    assert trickler.asked, "the server was never asked anything"
