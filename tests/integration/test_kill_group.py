"""Stopping a process group (host_agent.kill_group, through LocalHost.kill_tree) on real processes:
SIGTERM first, SIGKILL after the grace period, the leader reaped, survivors named."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from pytest_pd.cluster import host_agent
from pytest_pd.cluster.hosts import Proc
from pytest_pd.cluster.launchers.local import LocalHost
from pytest_pd.errors import HostError
from tests.helpers import group_alive


def started(host: LocalHost, name: str, script: str, run_dir: Path, members: int) -> Proc:
    """``sh -c script`` started as the launcher starts servers, once its group has ``members``."""
    proc = host.start_detached(name, ("sh", "-c", script), {}, run_dir)
    deadline = time.monotonic() + 10
    while len(host_agent.group_members(proc.pid)) < members:
        assert time.monotonic() < deadline, f"{name} did not start its {members} processes"
        time.sleep(0.02)
    return proc


def test_a_group_that_obeys_sigterm_goes_at_once_and_its_leader_is_reaped(tmp_path: Path):
    host = LocalHost()
    proc = started(host, "srv", "sleep 300 & wait", tmp_path, members=2)
    start = time.monotonic()
    host.kill_tree(proc, grace_s=10)
    assert time.monotonic() - start < 5
    assert proc.popen is not None and proc.popen.returncode == -signal.SIGTERM
    assert not Path(f"/proc/{proc.pid}").exists()  # reaped: no zombie left behind
    assert not group_alive(proc.pid) and host_agent.group_members(proc.pid) == []
    host.kill_tree(proc)  # idempotent: a gone group is fine


def test_what_ignores_sigterm_is_killed_after_the_grace_period(tmp_path: Path):
    host = LocalHost()
    proc = started(host, "stubborn", 'trap "" TERM; sleep 300 & wait', tmp_path, members=2)
    start = time.monotonic()
    host.kill_tree(proc, grace_s=0.5)
    assert 0.5 <= time.monotonic() - start < 0.5 + host_agent.KILL_WAIT_S
    assert proc.popen is not None and proc.popen.returncode == -signal.SIGKILL
    assert not group_alive(proc.pid)


def test_an_adopted_group_is_watched_and_stopped(tmp_path: Path):
    """A group an earlier session started: no Popen to poll; its zombie leader counts as gone."""
    leader = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        host = LocalHost()
        proc = host.adopt("old", leader.pid, tmp_path)
        assert host.exit_code(proc) is None
        host.kill_tree(proc, grace_s=5)
        assert host.exit_code(proc) == -1
    finally:
        leader.kill()
        leader.wait()
    assert leader.returncode == -signal.SIGTERM


def test_survivors_of_sigkill_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    real_killpg = os.killpg
    monkeypatch.setattr(host_agent, "KILL_WAIT_S", 0.2)
    host = LocalHost()
    proc = started(host, "unkillable", "sleep 300 & wait", tmp_path, members=2)
    try:
        monkeypatch.setattr(os, "killpg", lambda pgid, sig: real_killpg(pgid, sig) if sig == 0 else None)
        with pytest.raises(HostError) as err:
            host.kill_tree(proc, grace_s=0.2)
        monkeypatch.undo()
        assert re.fullmatch(
            rf"process group {proc.pid} of unkillable on localhost survived SIGKILL "
            rf"\(pid {proc.pid} \([A-Z]\) sh -c sleep 300 & wait; pid \d+ \([A-Z]\) sleep 300\); "
            rf"inspect it with `ps -o pid,stat,cmd -g {proc.pid}` and kill it by hand\.",
            str(err.value),
        ), str(err.value)
    finally:
        real_killpg(proc.pid, signal.SIGKILL)
        assert proc.popen is not None
        proc.popen.wait()


def test_only_a_process_group_is_ever_signalled():
    for pgid in (-1, 0, 1):  # this process's own group, every process, init's
        with pytest.raises(ValueError, match="not a process group"):
            host_agent.kill_group(pgid, grace_s=0.1)
    gone = subprocess.Popen(["true"], start_new_session=True)
    gone.wait()
    assert host_agent.kill_group(gone.pid, grace_s=0.1) == []
