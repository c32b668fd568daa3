"""The pure parts of ``launcher: slurm``: what a Slurm cluster file must say, the job's sbatch
command, Slurm's ``Key=Value`` records, and the spec once Slurm has placed the hosts."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from pytest_pd.cluster.commands import launch_plan, render_commands
from pytest_pd.cluster.launchers.slurm.job import JobState, parse_record, sbatch_argv
from pytest_pd.cluster.launchers.slurm.lease import SessionJob, SessionLease, parse_comment
from pytest_pd.cluster.spec import SlurmSpec
from pytest_pd.cluster.spec_file import load_cluster, parse_cluster
from pytest_pd.errors import ClusterFileError
from tests.helpers import CLUSTERS

SLURM = """\
name: mini
launcher: slurm
engine: sglang
model: {path: /models/m}
slurm: {partition: gpu, time: "1:00:00"}
hosts:
  a: {gpus: 8}
  b: {gpus: 8, node: gpu-17}
  c: {gpus: 8}
prefill:
  - {hosts: [a, b], port: 30000, bootstrap_port: 8998, tp: 16, dist_init_addr: ":5000"}
decode:
  - {host: c, port: 30001, tp: 8}
router: {port: 8000}
"""


def parse(text: str, tmp_path: Path):
    path = tmp_path / "mini.yaml"
    path.write_text(text)
    return parse_cluster(text, path)


def test_a_slurm_cluster_names_no_addresses_and_is_placed_at_bring_up(tmp_path):
    spec = parse(SLURM, tmp_path)
    assert spec.router_url == "http://<a>:8000"  # not known until Slurm allocates the nodes
    placed = spec.placed({"a": "10.0.0.7", "b": "10.0.0.8", "c": "10.0.0.9"})
    assert placed.router_url == "http://10.0.0.7:8000"
    assert placed.server_url(placed.servers("decode")[0]) == "http://10.0.0.9:30001"
    assert placed.source == spec.source  # relative paths still resolve against the file
    ranks = [c.argv for c in launch_plan(placed) if c.name.startswith("prefill-0")]
    for rank, argv in enumerate(ranks):  # ":PORT" is the first node's address
        assert argv[argv.index("--dist-init-addr") + 1] == "10.0.0.7:5000"
        assert argv[argv.index("--node-rank") + 1] == str(rank)
    assert spec.servers("prefill")[0].dist_init_addr == ":5000"  # the original is unchanged


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("  a: {gpus: 8}", "  a: {gpus: 8, address: 10.0.0.1}"), "hosts.a.address: launcher: slurm places"),
        (("  a: {gpus: 8}", "  a: {gpus: 8, node: gpu-17}"), "node gpu-17 is named by two hosts"),
        (("launcher: slurm", "launcher: ssh"), "hosts.a.address: launcher: ssh needs the host's address"),
        (("slurm: {partition: gpu", "slurm: {partitio: gpu"), "unknown key 'partitio'"),
    ],
)
def test_slurm_cluster_file_mistakes_are_named(tmp_path, change, message):
    with pytest.raises(ClusterFileError) as info:
        parse(SLURM.replace(*change), tmp_path)
    assert message in str(info.value)


def test_the_job_asks_for_a_node_per_host_with_the_files_slurm_block():
    slurm = SlurmSpec(partition="gpu", account="llm", time="2:00:00", sbatch_args=["--exclusive"])
    assert sbatch_argv(slurm, "pytest-pd:x", 2, ["gpu-17"]) == [
        "sbatch", "--parsable", "--job-name=pytest-pd:x", "--nodes=2", "--ntasks-per-node=1",
        "--output=/dev/null", "--partition=gpu", "--account=llm", "--time=2:00:00",
        "--nodelist=gpu-17", "--exclusive",
    ]  # fmt: skip
    assert sbatch_argv(SlurmSpec(), "j", 1, []) == [
        "sbatch", "--parsable", "--job-name=j", "--nodes=1", "--ntasks-per-node=1", "--output=/dev/null",
    ]  # fmt: skip
    assert "--comment=pytest-pd session h /l/a b.lease" in sbatch_argv(
        SlurmSpec(), "j", 1, [], "pytest-pd session h /l/a b.lease"
    )


def test_a_jobs_session_is_read_from_its_comment_and_judged_by_its_lease(tmp_path):
    lease = SessionLease(tmp_path)
    host, path = parse_comment(lease.comment)
    assert (
        host == socket.gethostname() and path == str(lease.path) and lease.path.parent == tmp_path / "slurm"
    )
    job = SessionJob("7", "pytest-pd:x", "RUNNING", lease.comment)
    assert job.owner == "live"
    assert job.describe() == f"Slurm job 7 (pytest-pd:x, RUNNING; session on {host})"
    lease.release()  # as when its process dies: the OS drops the lock
    assert job.owner == "stale" and not lease.path.exists()
    elsewhere = SessionJob("8", "pytest-pd:x", "PENDING", "pytest-pd session other-login /a/b c.lease")
    assert elsewhere.owner == "elsewhere" and parse_comment(elsewhere.comment) == (
        "other-login",
        "/a/b c.lease",
    )
    for comment in ("", "(null)", "nightly run", "pytest-pd session onlyhost"):
        assert parse_comment(comment) is None
        assert SessionJob("9", "pytest-pd:x", "RUNNING", comment).owner == "unknown"


def test_scontrol_records_parse_and_states_read_as_users_see_them():
    line = "JobId=12 JobName=pytest-pd:x JobState=PENDING Reason=Resources NodeList=(null) Command=(null)"
    record = parse_record(line)
    assert record["JobState"] == "PENDING" and record["Reason"] == "Resources" and record["JobId"] == "12"
    assert str(JobState("PENDING", "Resources", "")) == "PENDING (reason: Resources)"
    assert str(JobState("CANCELLED", "None", "n1")) == "CANCELLED"


def test_shipped_slurm_cluster_renders_how_its_lines_run():
    spec = load_cluster("h20-pp2-slurm", CLUSTERS)
    text = render_commands(spec)
    assert text.startswith("# launcher: slurm: one job holds a node per host")
    assert "# prefill-0 on prefill-node (<prefill-node>)" in text
    assert "--host '<prefill-node>'" in text or "--host <prefill-node>" in text
