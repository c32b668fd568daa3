"""Acceptance through Slurm: the shipped suite, unchanged, against sim-pp2 and its sim-tp8 baseline
with ``launcher: slurm`` on a real local Slurm (slurmctld + two slurmd: n1 at 127.0.0.2, n2 at
127.0.0.3). Each bring-up is one job; every server and the router a step of it; afterwards no job
is left and no process of the runs survives."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pytest_pd.cluster.spec_file import load_cluster
from pytest_pd.cluster.topology import Topology
from pytest_pd.errors import BringUpError
from tests.helpers import REPO, SEED_BOUNDS_SPEEDUP, assert_nothing_left, run_session
from tests.helpers.slurm import PARTITION, LocalSlurm, slurm_cluster_copy, tagged_processes

# the shipped suite's verdicts on measured timing; and one local Slurm per machine
pytestmark = pytest.mark.serial


def test_shipped_suite_passes_through_slurm(
    pytester: pytest.Pytester, local_slurm: LocalSlurm, tmp_path: Path
):
    folder = tmp_path / "clusters"
    for name in ("sim-pp2", "sim-tp8"):
        slurm_cluster_copy(name, folder, sim={"speedup": SEED_BOUNDS_SPEEDUP})
    result, out = run_session(pytester, folder, str(REPO / "suites" / "test_pd_acceptance.py"), "-s")
    text = result.stdout.str()
    assert result.ret == 0, text
    result.assert_outcomes(passed=1, skipped=3)  # the cpu-* workloads are not for sim clusters
    jobs = re.findall(r"(sim-\w+): submitted Slurm job (\d+) for 2 node\(s\)", text)
    assert [c for c, _ in jobs] == ["sim-pp2", "sim-tp8"], text
    for cluster, job in jobs:
        for host, node, address in (("prefill-node", "n1", "127.0.0.2"), ("decode-node", "n2", "127.0.0.3")):
            assert f"{cluster}: host {host} is node {node} ({address}) of Slurm job {job}" in text, text
        assert f"{cluster}: Slurm job {job} ended" in text
    assert re.search(r"sim-pp2 \(candidate, simulated ×\d+\)\s+TP=4, PP=2", text), text

    runs = sorted(p for p in (out / "runs").iterdir() if p.is_dir())
    assert [p.name.split("-", 1)[1] for p in runs] == ["sim-pp2", "sim-tp8"]
    for run in runs:  # each process's output came back through srun, from its node
        for name, node in (("prefill-0", "n1"), ("decode-0", "n2"), ("router", "n1")):
            first = (run / f"{name}.log").read_text().splitlines()[0]
            assert first.startswith(f"# {name} on "), first
            assert "srun --jobid=" in first and f"--nodelist={node}" in first, first
    for path in (out / "results").glob("*.json"):
        data = json.loads(path.read_text())
        assert data["metrics"]["completed"] == 32 and data["metrics"]["failed"] == 0
        assert data["cluster"]["launcher"] == "slurm"
        assert re.match(r"http://127\.0\.0\.2:\d+$", data["cluster"]["router_url"]), data["cluster"]
        scraped = data["telemetry"]["server"]  # /metrics of the servers and the router, at their nodes
        for name, address in (("prefill-0", "127.0.0.2"), ("decode-0", "127.0.0.3"), ("router", "127.0.0.2")):
            assert scraped[name]["url"].startswith(f"http://{address}:"), scraped[name]["url"]
            assert scraped[name]["errors"] == 0 and scraped[name]["samples"], name
    assert_nothing_left(out / "runs")  # the srun processes
    assert local_slurm.jobs() == []  # both jobs ended
    assert tagged_processes(runs) == []  # and every step's processes with them


@pytest.mark.parametrize(
    ("slurm", "message"),
    [
        (  # sbatch says no at once
            {"partition": "nosuch"},
            r"Slurm refused the job: `sbatch .*--partition=nosuch` said: sbatch: error: .*[Pp]artition",
        ),
        (  # accepted, but never started within start_timeout_s: cancelled, with Slurm's reason
            {"partition": PARTITION, "sbatch_args": ["--begin=now+1hour"], "start_timeout_s": 3},
            r"Slurm job \d+ \(pytest-pd:sim-tp8\) did not start: PENDING \(reason: BeginTime\) after \d+ s",
        ),
    ],
    ids=["refused", "pending-too-long"],
)
def test_a_job_that_cannot_run_fails_bring_up_with_slurms_word(
    local_slurm: LocalSlurm, tmp_path: Path, slurm: dict, message: str
):
    path = slurm_cluster_copy("sim-tp8", tmp_path / "clusters")
    data = yaml.safe_load(path.read_text())
    data["slurm"] = slurm
    path.write_text(yaml.safe_dump(data))
    topology = Topology(load_cluster(str(path), tmp_path), tmp_path / "run", say=print)
    with pytest.raises(BringUpError, match=message):
        topology.up()
    assert local_slurm.jobs() == []  # the pending job was cancelled, not left in the queue
    assert not list((tmp_path / "run").glob("*.pid"))  # nothing started


def test_doctor_asks_each_node_of_one_job(local_slurm: LocalSlurm, tmp_path: Path):
    """`pytest-pd doctor` on a Slurm cluster: one job for both hosts, each probed in a step on its
    node, the job ended afterwards."""
    slurm_cluster_copy("sim-pp2", tmp_path / "clusters", baseline=None)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest_pd.cli",
            "doctor",
            "sim-pp2",
            "--cluster-dir",
            str(tmp_path / "clusters"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "launcher slurm, engine sim" in done.stdout
    for host, runs in (("prefill-node", "prefill-0, router"), ("decode-node", "decode-0")):
        assert re.search(
            rf"host {host}: Python [\d.]+ at \S+\n  runs {runs}\n  ok +pytest_pd.sim", done.stdout
        )
    assert done.stdout.rstrip().endswith("nothing missing")
    assert local_slurm.jobs() == []
