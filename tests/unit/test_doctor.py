"""`pytest-pd doctor`'s pure parts: what each host of a cluster needs (from its launch commands),
and how a host's probe answer reads (ok / MISSING / not reachable). The h20-* files are loaded,
never contacted."""

from __future__ import annotations

from pytest_pd.cluster.commands import launch_plan
from pytest_pd.cluster.spec_file import load_cluster
from pytest_pd.doctor import assess, module_of, needs_of
from tests.helpers import CLUSTERS

ROUTER = "sglang_router.launch_router"


def probe(**overrides):
    answer = {
        "python": "3.10.12",
        "executable": "/usr/bin/python3",
        "modules": {"sglang.launch_server": {"found": True, "version": "0.5.6.post2"}},
        "paths": {},
        "gpus": ["NVIDIA H20, 97871 MiB, 550.54.15"] * 8,
        "gpu_problem": None,
    }
    return {**answer, **overrides}


def test_each_host_needs_what_its_commands_run():
    spec = load_cluster("h20-pp2", CLUSTERS)
    needs = {n.host: n for n in needs_of(spec, launch_plan(spec))}
    assert sorted(needs) == ["qjhs0", "qjhs2"]
    prefill_host = next(n for n in needs.values() if "router" in n.processes)
    assert set(prefill_host.modules) == {"sglang.launch_server", ROUTER}
    assert all(n.gpus for n in needs.values())
    assert all(spec.model_path in n.paths for n in needs.values())
    sim = load_cluster("sim-pp2", CLUSTERS)
    assert not any(n.gpus for n in needs_of(sim, launch_plan(sim)))  # a simulated engine
    assert module_of(["python3", "-m", "sglang.launch_server", "--tp", "8"]) == "sglang.launch_server"
    assert module_of(["/usr/bin/sglang-router"]) is None


def test_assess_reads_ok_missing_and_unreachable():
    spec = load_cluster("h20-tp8", CLUSTERS)
    needs = next(n for n in needs_of(spec, launch_plan(spec)) if ROUTER in n.modules)
    model = spec.model_path
    lines, missing = assess(needs, probe(paths={model: True}))
    assert "  ok       sglang.launch_server         sglang 0.5.6.post2" in lines
    assert any(line.startswith(f"  MISSING  {ROUTER}") for line in lines)
    assert missing == [
        f"{needs.host}: {ROUTER} cannot be imported (not found); router needs it: "
        f"install sglang-router into {needs.python}"
    ]
    assert any("8 GPU(s): NVIDIA H20" in line for line in lines)

    _, missing = assess(needs, probe(gpus=None, gpu_problem="nvidia-smi not found"))
    assert f"{needs.host}: no GPU visible (nvidia-smi not found)" in missing
    assert any(f"folder {model}" in m for m in missing)

    lines, missing = assess(needs, None, "could not connect to root@qjhs0.example:22")
    assert lines == [f"host {needs.host}: not reachable: could not connect to root@qjhs0.example:22"]
    assert missing == [f"{needs.host}: not reachable (could not connect to root@qjhs0.example:22)"]


def test_an_engine_version_other_than_the_pinned_one_is_named():
    spec = load_cluster("h20-tp8", CLUSTERS)  # pins the seed's SGLang 0.5.6.post2
    needs = next(n for n in needs_of(spec, launch_plan(spec)) if ROUTER in n.modules)
    newer = {"sglang.launch_server": {"found": True, "version": "0.5.23"}, ROUTER: {"found": True}}
    lines, missing = assess(needs, probe(modules=newer, paths={spec.model_path: True}))
    assert "  MISMATCH sglang.launch_server         sglang 0.5.23" in lines
    assert missing == [
        f"{needs.host}: sglang.launch_server is version 0.5.23, the cluster file pins engine_version "
        "0.5.6.post2 (its commands are rendered for that): install it, or change the pin"
    ]
