"""A small DevTools-protocol client: open an HTML file in headless Chromium, collect console
errors and uncaught exceptions, and read what the page shows (tables, charts and their sizes)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--window-size=1300,2000",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
]

PROBE = """(() => {
  const visible = el => {
    const r = el.getBoundingClientRect(), s = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none';
  };
  // the summary at the top of the report (the copy in each test's row details starts collapsed)
  const tables = [...document.querySelectorAll('.additional-summary table.pd-comparison')];
  return {
    comparison_tables: tables.length,
    comparison_visible: tables.length > 0 && tables.every(visible),
    verdict_cells: [...document.querySelectorAll('.additional-summary table.pd-comparison td')]
      .filter(td => td.classList.contains('pd-fail')).map(td => getComputedStyle(td).backgroundColor),
    failing_rows: document.querySelectorAll('tr.pd-fail-row').length,
    charts: [...document.querySelectorAll('img.pd-chart')].map(i => ({
      kind: i.dataset.chart, loaded: i.complete && i.naturalWidth > 0,
      width: i.naturalWidth, height: i.naturalHeight, visible: visible(i)})),
    planted_markup_ran: window.__pdPlanted !== undefined,  // set only if planted markup executes
    failure_sections: [...document.querySelectorAll('.additional-summary .pd-failure')]
      .map(e => ({text: e.innerText, visible: visible(e)})),
    scripts_from_network: [...document.querySelectorAll('script[src]')]
      .map(s => s.src).filter(u => !u.startsWith('data:') && !u.startsWith('file:')),
  };
})()"""


def _devtools_port(profile: Path, proc: subprocess.Popen, timeout: float = 30.0) -> int:
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited with code {proc.returncode}")
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int(marker.read_text().splitlines()[0])
        time.sleep(0.05)
    raise TimeoutError("chromium did not open its DevTools port")


async def _inspect(port: int, url: str, settle_s: float) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
        targets = json.loads(resp.read())
    ws_url = next(t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page")
    ids = itertools.count(1)
    errors: list[str] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url, max_msg_size=0) as ws:
        pending: dict[int, asyncio.Future] = {}
        loaded = asyncio.Event()

        async def reader() -> None:
            async for msg in ws:
                data = json.loads(msg.data)
                if "id" in data and data["id"] in pending:
                    pending.pop(data["id"]).set_result(data)
                method, params = data.get("method"), data.get("params", {})
                if method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                    errors.append(
                        " ".join(
                            str(a.get("value", a.get("description", ""))) for a in params.get("args", [])
                        )
                    )
                elif method == "Runtime.exceptionThrown":
                    errors.append(params["exceptionDetails"].get("text", "exception"))
                elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                    errors.append(params["entry"].get("text", ""))
                elif method == "Page.loadEventFired":
                    loaded.set()

        async def call(method: str, **params: Any) -> dict[str, Any]:
            n = next(ids)
            pending[n] = asyncio.get_running_loop().create_future()
            await ws.send_str(json.dumps({"id": n, "method": method, "params": params}))
            return await asyncio.wait_for(pending[n], 30)

        task = asyncio.create_task(reader())
        try:
            for domain in ("Runtime", "Log", "Page"):
                await call(f"{domain}.enable")
            await call("Page.navigate", url=url)
            await asyncio.wait_for(loaded.wait(), 60)
            await asyncio.sleep(settle_s)  # let the report's own scripts run
            result = await call("Runtime.evaluate", expression=PROBE, returnByValue=True)
        finally:
            task.cancel()
    found = result["result"]["result"]["value"]
    found["console_errors"] = errors
    return found


def inspect_report(path: Path, tmp: Path, settle_s: float = 1.0) -> dict[str, Any]:
    """Open ``path`` in headless Chromium (its own profile under ``tmp``) and return what the page
    shows, with ``console_errors``: console.error calls, uncaught exceptions and error log entries."""
    profile = tmp / "chromium-profile"
    profile.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        port = _devtools_port(profile, proc)
        return asyncio.run(_inspect(port, path.resolve().as_uri(), settle_s))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
