"""A process of a real cluster killed in the middle of a measured run: the session started on a
suite, the victim's process group sent SIGKILL once the run is well under way, and how long the
session then took to fail."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.helpers import session_args, wait_for_text


@dataclass
class Killed:
    returncode: int
    text: str  # the session's output
    took: float  # seconds from the kill to the session's end
    result: dict[str, Any]  # the run's results file


def kill_mid_run(
    folder: Path,
    tmp: Path,
    cluster: str,
    suite: str,
    victim: str,
    running: str,
    under_way: Callable[[], bool],
    *,
    timeout: float = 300,
) -> Killed:
    """Run ``suite`` on ``cluster`` (its file in ``folder``); once the session says ``running``
    and ``under_way()`` holds (polled), SIGKILL ``victim``'s process group."""
    path = tmp / "test_fault_suite.py"
    path.write_text(suite)
    out, log = tmp / "out", tmp / "session.log"
    argv = [
        sys.executable,
        "-m",
        "pytest",
        str(path),
        *session_args(folder, out, cluster),
        "-s",
        "-p",
        "no:randomly",
    ]
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            argv, cwd=tmp, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
        try:
            wait_for_text(log, running, proc, timeout=600)
            deadline = time.monotonic() + timeout
            while not under_way():
                assert proc.poll() is None, "the session ended before the run was under way"
                assert time.monotonic() < deadline, f"the run was not under way after {timeout:.0f} s"
                time.sleep(0.2)
            (pid_file,) = (out / "runs").rglob(f"{victim}.pid")
            os.killpg(int(pid_file.read_text()), signal.SIGKILL)
            killed = time.monotonic()
            proc.wait(timeout=120)
            took = time.monotonic() - killed
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    (result,) = [json.loads(p.read_text()) for p in (out / "results").glob("*.json")]
    return Killed(proc.returncode, log.read_text(errors="replace"), took, result)
