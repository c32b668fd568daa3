"""The harness killed hard (SIGKILL, the OOM killer, a lost CI runner): no teardown runs, every
server and the router keep running in their own sessions. The next session that takes the host
lock finds that run in the lock's ledger, says what it found and stops it before it starts
anything; `pytest-pd ps` lists it and `pytest-pd down` (no argument) stops it too. Processes are
told apart by the run id in their environment, never by PID alone."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_pd.cluster import host_agent
from pytest_pd.cluster.stale_runs import LocalAgent, RunLedger, reap_stale, run_entry
from tests.helpers import (
    assert_nothing_left,
    group_alive,
    session_args,
    sim_cluster_copy,
    started_pids,
    wait_for_text,
)

HOLD = """
import time

def test_hold(pd_cluster):
    time.sleep(600)
"""
PASS = """
def test_cluster(pd_cluster):
    assert pd_cluster.router_url
"""
STALE = re.compile(
    r"found a run whose session died without tearing down: run (\S+) of cluster "
    r"sim-tp8 \(run directory (\S+); started \d+ s ago by pytest-pd pid (\d+) on .*?\): "
    r"(.*)\. Stopping it"
)
PROCESS = r"{} \(pid [\d, ]+\)"  # a server and its children, e.g. "router (pid 41, 43)"


def _session(
    tmp: Path, folder: Path, out: str, suite: str, env: dict[str, str]
) -> tuple[subprocess.Popen, Path]:
    (tmp / f"test_{out}.py").write_text(suite)
    log = tmp / f"{out}.log"
    argv = [sys.executable, "-m", "pytest", f"test_{out}.py", *session_args(folder, tmp / out, "sim-tp8")]
    with log.open("wb") as fh:
        proc = subprocess.Popen(argv, cwd=tmp, stdout=fh, stderr=subprocess.STDOUT, env=env)
    return proc, log


def _pytest_pd(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest_pd.cli", *args], capture_output=True, text=True, timeout=120, env=env
    )


def _kill_after_bring_up(tmp: Path, folder: Path, env: dict[str, str]) -> list[int]:
    """A session SIGKILLed once its cluster is up: returns the process groups it left running."""
    proc, log = _session(tmp, folder, "killed", HOLD, env)
    try:
        wait_for_text(log, "sim-tp8: ready at", proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    left = [pid for pid in started_pids(tmp / "killed" / "runs") if group_alive(pid)]
    assert len(left) == 3, f"prefill, decode and router should outlive a SIGKILLed harness: {left}"
    return left


@pytest.mark.parametrize("launcher", ["local", "ssh"])
def test_next_session_stops_what_a_killed_session_left(tmp_path, request, launcher):
    folder = tmp_path / "clusters"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTEST_PD_LOCK_DIR": str(tmp_path / "locks")}
    if launcher == "ssh":
        from tests.helpers.sshd import ssh_cluster_copy

        ssh_cluster_copy("sim-tp8", folder, request.getfixturevalue("sshd_farm"), tmp_path)
    else:
        sim_cluster_copy("sim-tp8", folder)
    left = _kill_after_bring_up(tmp_path, folder, env)

    again, log = _session(tmp_path, folder, "again", PASS, env)
    code = again.wait(timeout=240)
    text = log.read_text(errors="replace")
    assert code == 0, text
    found = STALE.search(text)
    assert found, text
    for name in ("prefill-0", "decode-0", "router"):
        assert re.search(PROCESS.format(name), found.group(4)), found.group(0)
    assert found.group(2) == str(next((tmp_path / "killed" / "runs").iterdir())), text
    assert f"stale run {found.group(1)} stopped; nothing of it is left" in text
    # it was stopped before anything new started
    assert text.index("stopped; nothing of it is left") < text.index("started prefill-0"), text
    assert not [pid for pid in left if group_alive(pid)]
    assert_nothing_left(tmp_path / "again" / "runs")
    assert host_agent.members([{"run": found.group(1)}]) == []
    ledgers = list((tmp_path / "locks").glob("*.runs/*.json"))
    assert ledgers == [], ledgers  # the killed run's entry and the second run's are gone


def test_ps_lists_a_stale_run_and_down_stops_it(tmp_path):
    folder = tmp_path / "clusters"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTEST_PD_LOCK_DIR": str(tmp_path / "locks")}
    sim_cluster_copy("sim-tp8", folder)
    left = _kill_after_bring_up(tmp_path, folder, env)

    ps = _pytest_pd("ps", "--cluster", "sim-tp8", "--cluster-dir", str(folder), env=env)
    assert ps.returncode == 0, ps.stderr
    assert "this machine (launcher: local): free" in ps.stdout, ps.stdout
    assert re.search(
        r"STALE \(its session is gone.*\): run \S+ of cluster sim-tp8 .*"
        r"prefill-0 \(pid \d+\), decode-0 \(pid \d+\), router \(pid \d+\)",
        ps.stdout,
    ), ps.stdout

    down = _pytest_pd("down", env=env)  # this machine, the default lock folder ($PYTEST_PD_LOCK_DIR)
    assert down.returncode == 0, down.stderr
    assert "found a run whose session died without tearing down" in down.stderr, down.stderr
    assert "this machine: 1 stale run(s) stopped" in down.stderr, down.stderr
    assert not [pid for pid in left if group_alive(pid)]

    again = _pytest_pd("down", env=env)
    assert "this machine: nothing stale" in again.stderr, again.stderr
    ps = _pytest_pd("ps", env=env)
    assert "no run recorded" in ps.stdout, ps.stdout


def _tagged_sleep(run: str) -> subprocess.Popen:
    env = {**os.environ, host_agent.RUN_ENV: run, host_agent.PROC_ENV: "sleeper"}
    return subprocess.Popen(["sleep", "600"], env=env, start_new_session=True)


def test_a_reused_pid_or_a_live_run_is_never_touched(tmp_path):
    """The ledger names a dead run; the PID it once had now belongs to an unrelated process (no
    tag); a run of a live session is recorded in another lock's ledger. Only tagged processes of
    the dead run are stopped."""
    ledger = RunLedger(LocalAgent(), str(tmp_path / "localhost.runs"), "this machine")
    other = RunLedger(LocalAgent(), str(tmp_path / "other.runs"), "this machine")
    unrelated = subprocess.Popen(["sleep", "600"], start_new_session=True)  # the "reused" PID
    dead = _tagged_sleep("dead-run")
    live = _tagged_sleep("live-run")
    try:
        entry = run_entry("dead-run", "sim-tp8", tmp_path / "run", "pytest-pd pid 1 (gone)")
        ledger.record({**entry, "pids": [unrelated.pid]})
        other.record(run_entry("live-run", "sim-tp8", tmp_path / "run2", "a live session"))
        said: list[str] = []
        assert reap_stale(ledger, said.append) == 1
        assert dead.wait(timeout=20) == -signal.SIGTERM
        assert unrelated.poll() is None and live.poll() is None
        assert "run dead-run of cluster sim-tp8" in said[0] and "sleeper (pid" in said[0], said
        assert json.loads(json.dumps(ledger.runs())) == []
        assert [e["run"] for e in other.runs()] == ["live-run"]
    finally:
        for proc in (unrelated, dead, live):
            proc.kill()
            proc.wait()


def wait_until_seen(ledger: RunLedger, run: str, pid: int, timeout: float = 5.0) -> None:
    """Until the ledger lists ``pid`` among ``run``'s live processes (on a loaded CI machine a
    just-started process once was not listed yet: the entry was then forgotten as finished)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = next((e for e in ledger.runs() if e["run"] == run), {})
        if any(p["pid"] == pid for p in entry.get("processes", [])):
            return
        time.sleep(0.05)
    raise AssertionError(f"the ledger never listed pid {pid} as a process of {run}: {ledger.runs()}")


def test_a_kept_cluster_is_reported_not_stopped(tmp_path):
    ledger = RunLedger(LocalAgent(), str(tmp_path / "localhost.runs"), "this machine")
    kept = _tagged_sleep("kept-run")
    try:
        ledger.record(run_entry("kept-run", "sim-tp8", tmp_path / "run", "me", kept=True))
        wait_until_seen(ledger, "kept-run", kept.pid)
        said: list[str] = []
        assert reap_stale(ledger, said.append) == 0
        time.sleep(0.2)
        assert kept.poll() is None
        assert "kept for debugging" in said[0] and f"pytest-pd down {tmp_path / 'run'}" in said[0]
    finally:
        kept.kill()
        kept.wait()
    said = []
    assert reap_stale(ledger, said.append) == 0 and said == []  # gone: quietly forgotten
    assert ledger.runs() == []


@pytest.mark.serial  # one local Slurm per machine
@pytest.mark.parametrize("how", ["next-session", "down"])
def test_a_killed_sessions_slurm_job_is_found_and_cancelled(tmp_path, local_slurm, how):
    """Through Slurm the job outlives a SIGKILLed session, holding its nodes until its time limit.
    While the session lives `pytest-pd ps --cluster` says so; once it is dead its lease is free,
    and the next session (before it submits its own job) or `pytest-pd down --cluster` cancels the
    job: its steps, and the sruns on this machine, end with it."""
    from tests.helpers.slurm import slurm_cluster_copy, tagged_processes

    folder = tmp_path / "clusters"
    slurm_cluster_copy("sim-tp8", folder)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTEST_PD_LOCK_DIR": str(tmp_path / "locks")}
    cluster = ("--cluster", "sim-tp8", "--cluster-dir", str(folder))
    proc, log = _session(tmp_path, folder, "killed", HOLD, env)
    try:
        wait_for_text(log, "sim-tp8: ready at", proc)
        ps = _pytest_pd("ps", *cluster, env=env)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    job = re.search(r"submitted Slurm job (\d+)", log.read_text()).group(1)
    assert (
        f"in use by a live session: Slurm job {job} (pytest-pd:sim-tp8, RUNNING; session on " in ps.stdout
    ), ps.stdout + ps.stderr
    assert [line.split()[:2] for line in local_slurm.jobs()] == [[job, "RUNNING"]]
    runs = list((tmp_path / "killed" / "runs").iterdir())
    assert len(tagged_processes(runs)) >= 3  # prefill, decode and router outlive the session

    ps = _pytest_pd("ps", *cluster, env=env)
    assert re.search(
        rf"STALE \(its session is gone.*\): Slurm job {job} \(pytest-pd:sim-tp8, RUNNING", ps.stdout
    ), ps.stdout + ps.stderr
    found = f"found Slurm job {job} (pytest-pd:sim-tp8, RUNNING; session on "
    if how == "down":
        down = _pytest_pd("down", *cluster, env=env)
        assert down.returncode == 0, down.stderr
        assert found in down.stderr and "sim-tp8: 1 stale Slurm job(s) cancelled" in down.stderr, down.stderr
        again = _pytest_pd("down", *cluster, env=env)
        assert "sim-tp8: no stale Slurm job" in again.stderr, again.stderr
    else:
        nxt, log = _session(tmp_path, folder, "again", PASS, env)
        code = nxt.wait(timeout=240)
        text = log.read_text(errors="replace")
        assert code == 0, text
        assert f"sim-tp8: {found}" in text and f"Slurm job {job} cancelled; nothing of it is left" in text
        assert text.index("nothing of it is left") < text.index("submitted Slurm job"), text
    assert local_slurm.jobs() == []
    assert not [pid for pid in started_pids(tmp_path / "killed" / "runs") if group_alive(pid)]  # the sruns
    assert tagged_processes(runs) == []  # and the steps' processes
    assert not list((tmp_path / "locks" / "slurm").iterdir())  # no lease file left
