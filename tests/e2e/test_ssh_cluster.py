"""Acceptance over SSH: the shipped suite, unchanged, against sim-pp2 and its sim-tp8 baseline with
``launcher: ssh``, prefill + router on one real sshd "host" (127.0.0.2) and decode on another
(127.0.0.3); nothing may be left running on either host afterwards."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, SEED_BOUNDS_SPEEDUP, assert_nothing_left, run_session
from tests.helpers.sshd import SshFarm, ssh_cluster_copy

pytestmark = pytest.mark.serial  # the shipped suite's verdicts on measured timing


def test_shipped_suite_passes_on_ssh_clusters_across_two_hosts(pytester, sshd_farm: SshFarm, tmp_path: Path):
    folder = tmp_path / "clusters"
    for name in ("sim-pp2", "sim-tp8"):
        ssh_cluster_copy(name, folder, sshd_farm, tmp_path, sim={"speedup": SEED_BOUNDS_SPEEDUP})
    result, out = run_session(
        pytester, folder, str(REPO / "suites" / "test_pd_acceptance.py"), "-s"
    )  # -s: progress lines
    text = result.stdout.str()
    assert result.ret == 0, text
    result.assert_outcomes(passed=1, skipped=3)  # the cpu-* workloads are not for sim clusters
    for cluster in ("sim-pp2", "sim-tp8"):
        for host, address in (("prefill-node", "127.0.0.2"), ("decode-node", "127.0.0.3")):
            assert re.search(rf"{cluster}: connected to {host} \(\S+@{address}:\d+\)", text), text
    assert re.search(r"sim-pp2 \(candidate, simulated ×\d+\)\s+TP=4, PP=2", text), text

    runs = sorted(p for p in (out / "runs").iterdir() if p.is_dir())
    assert [p.name.split("-", 1)[1] for p in runs] == ["sim-pp2", "sim-tp8"]
    for run in runs:  # remote logs fetched into the local run directory, pid files copied
        for name, address in (("prefill-0", "127.0.0.2"), ("decode-0", "127.0.0.3"), ("router", "127.0.0.2")):
            log = (run / f"{name}.log").read_text()
            assert log.startswith(f"# {name} on "), log[:200]
            assert f"({address}): " in log.splitlines()[0]
            assert (run / f"{name}.pid").read_text().strip().isdigit()
        remote = tmp_path / "remote" / "runs" / run.name
        assert sorted(p.name for p in remote.glob("*.pid")) == ["decode-0.pid", "prefill-0.pid", "router.pid"]
    for path in (out / "results").glob("*.json"):
        data = json.loads(path.read_text())
        assert data["metrics"]["completed"] == 32 and data["metrics"]["failed"] == 0
        assert data["server_info"]["decode-0"]["disaggregation_mode"] == "decode"
    assert_nothing_left(out / "runs")  # local copies of the remote pid files
    assert_nothing_left(tmp_path / "remote")  # the remote pid files themselves
    holders = sorted((tmp_path / "locks").glob("*.holder"))
    assert [p.name for p in holders] == ["127.0.0.2.holder", "127.0.0.3.holder"]
    assert all(p.read_text() == "" for p in holders)  # both host locks released


def test_doctor_over_ssh_reports_each_host(sshd_farm: SshFarm, tmp_path: Path):
    """`pytest-pd doctor` reaches each host over SSH and reports its Python, modules and model."""
    folder = tmp_path / "clusters"
    ssh_cluster_copy("sim-pp2", folder, sshd_farm, tmp_path, baseline=None)
    done = subprocess.run(
        [sys.executable, "-m", "pytest_pd.cli", "doctor", "sim-pp2", "--cluster-dir", str(folder)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    print(done.stdout)  # the README's example
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "launcher ssh, engine sim" in out
    for host, runs in (("prefill-node", "prefill-0, router"), ("decode-node", "decode-0")):
        assert re.search(rf"host {host}: Python [\d.]+ at \S+", out), out
        assert f"runs {runs}" in out
    assert re.search(r"ok +sglang_router.launch_router +sglang-router ", out), out
    assert out.rstrip().endswith("nothing missing")
