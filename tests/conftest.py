"""Shared test wiring: simulated clusters on free loopback ports, and process-leak checks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
CLUSTERS = REPO / "clusters"
SIM_MODEL = CLUSTERS / "models" / "sim-tiny"


def free_ports(n: int) -> list[int]:
    """n distinct ports that were free a moment ago on 127.0.0.1."""
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def free_port() -> int:
    return free_ports(1)[0]


class Proc:
    """A process in its own group, logging to a file; ``stop`` kills the group."""

    def __init__(self, name: str, argv: list[str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.p = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                  start_new_session=True, cwd=REPO)

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


@pytest.fixture
def sim_clusters(tmp_path: Path) -> Path:
    """sim-pp2 and its baseline sim-tp8 in a fresh cluster folder, on free ports."""
    folder = tmp_path / "clusters"
    sim_cluster_copy("sim-pp2", folder)
    sim_cluster_copy("sim-tp8", folder)
    return folder


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
    return any(pid_alive(int(p.name)) for p in Path("/proc").iterdir()
               if p.name.isdigit() and _pgid_of(int(p.name)) == pgid)


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


@pytest.fixture(scope="session")
def sshd_farm(tmp_path_factory: pytest.TempPathFactory):
    """Real OpenSSH servers on 127.0.0.2 and 127.0.0.3 (one "host" each), for the SSH tests;
    skips with the reason when sshd cannot be had here."""
    from tests.sshd import SshdUnavailable, start_farm

    try:
        farm = start_farm(tmp_path_factory.mktemp("sshd"))
    except SshdUnavailable as exc:
        pytest.skip(str(exc))
    yield farm
    farm.stop()
