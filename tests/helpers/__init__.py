"""Shared test helpers: simulated clusters on free loopback ports, sessions in subprocesses, and
process-leak checks. (Fixtures live in tests/conftest.py.)"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CLUSTERS = REPO / "clusters"
SIM_MODEL = CLUSTERS / "models" / "sim-tiny"
SEED_BOUNDS_SPEEDUP = 4
"""Simulated speedup for tests that run the shipped suite with the seed's bounds: throughput
≥ 0.95× the baseline leaves ~1.7 % of room over the model's PP=2/TP=8 ratio (0.967), and at the
sim-* files' ×10 the timing jitter of a loaded 2-core CI machine reached 3.6 % (a decode step of
27 ms runs in 2.7 ms there); jitter shrinks with the speedup."""


# Ports for the servers tests start: below the kernel's ephemeral range (32768-60999 here), so no
# outgoing connection of a busy run (clients, Slurm, sshd, the engines' own sockets) can already hold
# one on some 127.0.0.x when its server binds it; each xdist worker draws from its own slice, and a
# process never hands out the same port twice.
_PORT_LOW, _PORT_HIGH, _SLICES = 20000, 32000, 8
_handed_out: set[int] = set()


def _port_slice() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    width = (_PORT_HIGH - _PORT_LOW) // _SLICES
    start = _PORT_LOW + (index % _SLICES) * width
    return range(start, start + width)


def _bindable(port: int) -> bool:
    """Free on every local address (0.0.0.0 conflicts with any 127.0.0.x holding it)."""
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def free_ports(n: int) -> list[int]:
    """n distinct ports, free a moment ago on every local address, never handed out before by this
    process and outside the ephemeral range."""
    candidates = [p for p in _port_slice() if p not in _handed_out]
    random.shuffle(candidates)
    ports = []
    for port in candidates:
        if _bindable(port):
            ports.append(port)
            _handed_out.add(port)
            if len(ports) == n:
                return ports
    raise RuntimeError(f"no {n} free ports left in {_port_slice()}")


def free_port() -> int:
    return free_ports(1)[0]


def pd_cli(*args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
    """``pytest-pd ARGS`` as its own process, from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "pytest_pd.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


class Proc:
    """A process in its own group, logging to a file; ``stop`` kills the group."""

    def __init__(self, name: str, argv: list[str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.p = subprocess.Popen(
            argv, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO
        )

    def stop(self, sig: int = signal.SIGTERM, wait: float = 8.0) -> None:
        try:
            if self.p.poll() is None:
                os.killpg(self.p.pid, sig)
                try:
                    self.p.wait(wait)
                except subprocess.TimeoutExpired:
                    os.killpg(self.p.pid, signal.SIGKILL)
                    self.p.wait(5)
            else:  # the leader is gone; make sure nothing of its group survives
                try:
                    os.killpg(self.p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        finally:
            self.log.close()

    def tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""


def request(
    method: str, url: str, body: object = None, timeout: float = 30.0, raw: bytes | None = None
) -> tuple[int, bytes]:
    """One HTTP request with a JSON body; (status, body bytes), error statuses included."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def get_json(url: str) -> Any:
    status, data = request("GET", url)
    assert status == 200, (url, status, data[:300])
    return json.loads(data)


def wait_ok(url: str, procs: list[Proc], timeout: float = 40.0) -> None:
    """Poll ``url`` until it answers 200; fail at once (with logs) if a process exits."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        for p in procs:
            assert p.p.poll() is None, f"{p.name} exited early:\n{p.tail()}"
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
                last = r.status
        except (OSError, urllib.error.HTTPError) as e:
            last = e
        time.sleep(0.1)
    logs = "\n".join(f"--- {p.name}\n{p.tail()}" for p in procs)
    raise AssertionError(f"{url} never answered 200 (last: {last})\n{logs}")


def sim_argv(model: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "pytest_pd.sim", "--model-path", str(model), "--host", "127.0.0.1", *args]


@dataclass
class SimPD:
    """Simulated prefill + decode workers behind the real router, started by hand (below the
    harness, to test the simulator and the client on their own)."""

    router: str
    prefill: str
    decode: str
    boot: int
    procs: list[Proc]

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.stop()


def start_pd(
    log_dir: Path,
    speedup: float = 100.0,
    model: Path = SIM_MODEL,
    prefill_args: Sequence[str] = (),
    router_module: str = "sglang_router.launch_router",
    router_args: Sequence[str] = (),
    prefills: int = 1,
) -> SimPD:
    """``prefills`` prefill (TP4 PP2) sims + a decode (TP8, prefill_pp 2) sim behind sglang-router
    (or another router kind's ``router_module``, with ``router_args`` added) in PD mode;
    ``SimPD.prefill``/``boot`` are the first prefill's."""
    host = "127.0.0.1"
    d_port, r_port, prom, *prefill_ports = free_ports(3 + 2 * prefills)
    speed = ["--sim-speedup", str(speedup)]
    procs: list[Proc] = []
    prefill_urls: list[str] = []
    try:
        for k in range(prefills):
            p_port, boot = prefill_ports[2 * k], prefill_ports[2 * k + 1]
            procs.append(
                Proc(
                    "prefill" if k == 0 else f"prefill-{k}",
                    sim_argv(
                        model,
                        "--port",
                        str(p_port),
                        "--disaggregation-mode",
                        "prefill",
                        "--disaggregation-bootstrap-port",
                        str(boot),
                        "--tp-size",
                        "4",
                        "--pp-size",
                        "2",
                        "--context-length",
                        "65535",
                        *prefill_args,
                        *speed,
                    ),
                    log_dir,
                )
            )
            prefill_urls += ["--prefill", f"http://{host}:{p_port}", str(boot)]
        procs.append(
            Proc(
                "decode",
                sim_argv(
                    model,
                    "--port",
                    str(d_port),
                    "--disaggregation-mode",
                    "decode",
                    "--tp-size",
                    "8",
                    "--disaggregation-prefill-pp",
                    "2",
                    "--context-length",
                    "65535",
                    *speed,
                ),
                log_dir,
            )
        )
        procs.append(
            Proc(
                "router",
                [
                    sys.executable,
                    "-m",
                    router_module,
                    "--pd-disaggregation",
                    *prefill_urls,
                    "--decode",
                    f"http://{host}:{d_port}",
                    "--host",
                    host,
                    "--port",
                    str(r_port),
                    "--prometheus-host",
                    host,
                    "--prometheus-port",
                    str(prom),
                    "--worker-startup-check-interval",
                    "1",
                    "--disable-circuit-breaker",
                    *router_args,
                ],
                log_dir,
            )
        )
        wait_ok(f"http://{host}:{r_port}/readiness", procs, timeout=60)
    except BaseException:
        for p in reversed(procs):
            p.stop()
        raise
    first, first_boot = prefill_ports[0], prefill_ports[1]
    return SimPD(
        f"http://{host}:{r_port}", f"http://{host}:{first}", f"http://{host}:{d_port}", first_boot, procs
    )


def wait_for_text(path: Path, text: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    """Wait until ``text`` shows in the log file ``path`` of the running ``proc``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text(errors="replace"):
            return
        assert proc.poll() is None, path.read_text(errors="replace")
        time.sleep(0.05)
    raise AssertionError(f"never saw {text!r}:\n{path.read_text(errors='replace')}")


def session_args(cluster_dir: Path, out: Path, cluster: str) -> list[str]:
    """A pytest session on ``cluster`` whose runs, results and report all go under ``out``."""
    return [
        f"--cluster={cluster}",
        f"--cluster-dir={cluster_dir}",
        f"--pd-run-dir={out / 'runs'}",
        f"--pd-results-dir={out / 'results'}",
        f"--html={out / 'report.html'}",
        "-p",
        "no:cacheprovider",
    ]


def sim_cluster_copy(name: str, dest: Path, **overrides: object) -> Path:
    """A copy of a shipped sim cluster with fresh ports, an absolute model path and overrides
    (top-level keys replaced; ``sim`` merged)."""
    data = yaml.safe_load((CLUSTERS / f"{name}.yaml").read_text())
    p1, p2, boot, router, prom = free_ports(5)
    data["prefill"][0].update(port=p1, bootstrap_port=boot)
    data["decode"][0]["port"] = p2
    data["router"].update(port=router, prometheus_port=prom)
    data["model"]["path"] = str(SIM_MODEL)
    sim = {**data.get("sim", {}), **dict(overrides.pop("sim", {}))}  # type: ignore[arg-type]
    data.update(overrides, sim=sim)
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# Real SGLang on this CPU (the real-engine tier, tests marked real_sglang): set up by
# `make real-sglang` (tools/sglang_cpu/setup.sh) into this folder.
SGLANG_CPU_HOME = Path(os.environ.get("PD_SGLANG_HOME", "~/.cache/pytest-pd/sglang-0.5.23-cpu")).expanduser()
VLLM_CPU_HOME = Path(os.environ.get("PD_VLLM_HOME", "~/.cache/pytest-pd/vllm-0.32.0-cpu")).expanduser()


def real_cluster_copy(name: str, dest: Path, *, home: Path = SGLANG_CPU_HOME, **overrides: object) -> Path:
    """A copy of a shipped cpu-* cluster file with fresh ports (a vLLM server's NIXL side channel
    too) and the real-engine environment's absolute paths (``home``: SGLang's by default;
    top-level keys replaced by ``overrides``)."""
    data = yaml.safe_load((CLUSTERS / f"{name}.yaml").read_text())
    servers = [*data["prefill"], *data["decode"]]
    ports = iter(free_ports(3 * len(servers) + 2))
    for server in servers:
        server["port"] = next(ports)
        if "bootstrap_port" in server:
            server["bootstrap_port"] = next(ports)
        if "VLLM_NIXL_SIDE_CHANNEL_PORT" in server.get("env", {}):
            server["env"]["VLLM_NIXL_SIDE_CHANNEL_PORT"] = next(ports)
    data["router"].update(port=next(ports), prometheus_port=next(ports))
    data["model"]["path"] = str(home / "tiny-llama")
    for host in data["hosts"].values():
        host["python"] = str(home / "venv" / "bin" / "python")
    data.update(overrides)
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return any(
        pid_alive(int(p.name))
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and _pgid_of(int(p.name)) == pgid
    )


def _pgid_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[2])
    except (OSError, IndexError, ValueError):
        return None


def started_pids(run_base: Path) -> list[int]:
    return [int(p.read_text()) for p in run_base.rglob("*.pid")]


def assert_nothing_left(run_base: Path) -> None:
    pids = started_pids(run_base)
    assert pids, f"no pid files under {run_base}: nothing was started?"
    alive = [pid for pid in pids if group_alive(pid)]
    assert not alive, f"process groups still running after the session: {alive}"


def run_session(
    pytester: pytest.Pytester, cluster_dir: Path, *args: str, cluster: str = "sim-pp2"
) -> tuple[pytest.RunResult, Path]:
    """A pytest session on ``cluster`` in a subprocess, its outputs under ``pytester.path/out``."""
    out = pytester.path / "out"
    result = pytester.runpytest_subprocess(*session_args(cluster_dir, out, cluster), *args, timeout=300)
    return result, out


PREDICTION_SUITE = """
import pytest
from pytest_pd import Workload

W = Workload(input_len=2000, output_len=50, concurrency=4, num_requests=8)

@pytest.mark.pd_prediction(max_error=0.25, stats=("mean_ttft_ms", "output_throughput"))
@pytest.mark.parametrize("pd_workload", [W], ids=lambda w: w.id)
def test_predicted(pd_run):
    assert pd_run.candidate.metrics["completed"] == 8
"""
"""A suite holding a cluster's twin prediction to 25 % on a small workload (in2000-out50-c4-n8)."""
