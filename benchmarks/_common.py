"""Shared helpers of the benchmark scripts: a simulated SGLang worker on loopback, CPU clocks."""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SIM_TINY = REPO / "clusters" / "models" / "sim-tiny"
HOST = "127.0.0.1"
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class Sim:
    """A unified simulated worker in its own process group (``python -m pytest_pd.sim``)."""

    def __init__(self, *args: str, log: Path | None = None, cpus: set[int] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log_path = log or Path(f"/tmp/pytest-pd-bench-sim-{self.port}.log")
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        argv = [
            sys.executable,
            "-m",
            "pytest_pd.sim",
            "--model-path",
            str(SIM_TINY),
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--context-length",
            "65536",
            *args,
        ]
        self.p = subprocess.Popen(
            argv, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO
        )
        if cpus:
            os.sched_setaffinity(self.p.pid, cpus)
        deadline = time.monotonic() + 30
        while True:
            if self.p.poll() is not None:
                raise SystemExit(f"sim exited: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise SystemExit("sim did not become healthy in 30 s")
            time.sleep(0.1)

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the sim process used so far."""
        fields = Path(f"/proc/{self.p.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def stop(self) -> None:
        try:
            if self.p.poll() is None:
                os.killpg(self.p.pid, signal.SIGTERM)
                try:
                    self.p.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(self.p.pid, signal.SIGKILL)
                    self.p.wait(5)
        finally:
            self.log.close()

    def __enter__(self) -> Sim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def zero_compute_args(step_s: float, max_running: int = 8192) -> list[str]:
    """Sim flags for a worker with (almost) no prefill/KV cost and a fixed decode step of
    ``step_s`` wall seconds whatever the batch: the token rate is then concurrency / step."""
    return [
        "--tp-size",
        "8",
        "--max-running-requests",
        str(max_running),
        "--sim-speedup",
        "1",
        "--sim-prefill-tokens-per-s",
        "1e12",
        "--sim-prefill-attn-s-per-token2",
        "0",
        "--sim-prefill-batch-overhead-s",
        "0",
        "--sim-pp-stage-overhead-s",
        "0",
        "--sim-kv-bootstrap-s",
        "0",
        "--sim-decode-step-base-s",
        str(step_s),
        "--sim-hbm-gb-s",
        "1e12",
        "--sim-gpu-tflops",
        "1e12",
    ]


def cpu_times() -> float:
    """User + system CPU seconds of this process and its reaped children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def error_spread(errors: list[float]) -> str:
    """Relative errors over repeated runs (fractions) as mean, standard deviation and range, in %."""
    pct = [100 * e for e in errors]
    sd = statistics.stdev(pct) if len(pct) > 1 else 0.0
    return f"mean {statistics.mean(pct):+6.1f} %  sd {sd:4.1f} %  [{min(pct):+6.1f}, {max(pct):+6.1f}]"
