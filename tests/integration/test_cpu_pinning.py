"""Servers pinned to CPU cores (``cpus:``): the launch runs them under ``taskset -c``, every
process of theirs (the simulated server here) keeps that affinity, an unpinned one keeps the
machine's; the rendered commands say it; and the twin refuses to stand for CPU servers that
share a host's cores."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pytest_pd.cluster.commands import launch_plan, render_commands
from pytest_pd.cluster.spec_file import load_cluster
from pytest_pd.errors import ClusterFileError
from pytest_pd.measure import Measurer
from pytest_pd.twin.contention import cpu_set, shared_cores
from pytest_pd.twin.observed import NotModelled, topology_of
from tests.helpers import CLUSTERS, sim_cluster_copy


def _affinity(pid: int) -> set[int]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return cpu_set(line.split(":", 1)[1].strip())
    raise AssertionError(f"no affinity for {pid}")


def _pinned_copy(folder: Path, prefill_cpus: str) -> Path:
    path = sim_cluster_copy("sim-pp2", folder, baseline=None)
    data = yaml.safe_load(path.read_text())
    data["prefill"][0]["cpus"] = prefill_cpus
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_a_pinned_server_runs_on_its_cores_and_the_commands_say_so(tmp_path):
    _pinned_copy(tmp_path, "0")
    measurer = Measurer(tmp_path, tmp_path / "runs", None, say=lambda _: None)
    try:
        spec = measurer.spec("sim-pp2")
        assert "taskset -c 0 " in render_commands(spec)
        topology = measurer.up(spec)
        pids = {item.command.name: item.proc.pid for item in topology.running}
        assert _affinity(pids["prefill-0"]) == {0}
        assert _affinity(pids["decode-0"]) == _affinity(1)  # unpinned: what this process has
    finally:
        measurer.close()


def test_a_bad_core_list_names_the_key(tmp_path):
    path = _pinned_copy(tmp_path, "zero")
    with pytest.raises(ClusterFileError, match=r"prefill\[0\]\.cpus: expected CPU cores as `taskset -c`"):
        load_cluster(str(path), tmp_path)


def _cpu_cluster(**per_server: dict) -> dict:
    data = yaml.safe_load((CLUSTERS / "cpu-2p1d.yaml").read_text())
    for role, i, cpus in per_server.get("cpus", []):
        data[role][i]["cpus"] = cpus
    return data


def test_the_twin_refuses_cpu_servers_sharing_cores_and_takes_pinned_ones():
    shipped = _cpu_cluster()
    assert "share its cores" in (shared_cores(shipped) or "")
    with pytest.raises(NotModelled, match="pin each to its own cores"):
        topology_of(shipped)
    overlapping = _cpu_cluster(cpus=[("prefill", 0, "0"), ("prefill", 1, "1"), ("decode", 0, "1")])
    assert "prefill[1] and decode[0]" in (shared_cores(overlapping) or "")
    apart = _cpu_cluster(cpus=[("prefill", 0, "0"), ("prefill", 1, "1"), ("decode", 0, "2-3")])
    assert shared_cores(apart) is None
    assert len(topology_of(apart).prefill) == 2
    # servers on GPUs share a host's CPU cores as a matter of course
    assert shared_cores(yaml.safe_load((CLUSTERS / "h20-pp2.yaml").read_text())) is None


def test_the_launch_plan_keeps_the_engine_command_apart_from_the_pinning(tmp_path):
    spec = load_cluster(str(_pinned_copy(tmp_path, "0-1")), tmp_path)
    prefill = next(c for c in launch_plan(spec) if c.name == "prefill-0")
    assert prefill.launch_argv[:3] == ("taskset", "-c", "0-1")
    assert prefill.launch_argv[3:] == prefill.argv and "taskset" not in prefill.argv
