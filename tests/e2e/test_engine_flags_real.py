"""Launch flags checked against the real SGLang (0.5.23 on this machine's CPU), with its own argument
parser: every shipped SGLang cluster file renders, for the installed version, only flags it takes;
the seed's h20-pp2 as rendered for its pinned 0.5.6.post2 carries one 0.5.23 refuses (and
pytest-pd says so before anything starts); a cluster pinned to another version than the hosts run
is refused by name. Marked ``real_sglang``."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from pytest_pd.cluster.commands import launch_plan
from pytest_pd.cluster.engine_check import engine_args, flag_names, refusals
from pytest_pd.cluster.engines.sglang.argv import FLAGS_PROBE
from pytest_pd.cluster.spec_file import load_cluster
from pytest_pd.cluster.topology import Topology
from pytest_pd.errors import BringUpError
from tests.helpers import CLUSTERS, real_cluster_copy

pytestmark = pytest.mark.real_sglang
SHIPPED = sorted(
    p.stem for p in CLUSTERS.glob("*.yaml") if yaml.safe_load(p.read_text())["engine"] == "sglang"
)


def refused_by(python: Path, commands: list[list[str]]) -> list[list[str]]:
    done = subprocess.run(
        [str(python), "-c", FLAGS_PROBE, json.dumps(commands)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return [flag_names(unknown) for unknown in json.loads(done.stdout.strip().splitlines()[-1])]


def test_every_shipped_cluster_renders_flags_the_installed_sglang_takes(real_sglang: Path):
    python = real_sglang / "venv" / "bin" / "python"
    servers: list[tuple[str, list[str]]] = []
    for name in SHIPPED:
        spec = load_cluster(name, CLUSTERS).model_copy(update={"engine_version": "0.5.23"})
        servers += [
            (f"{name} {c.name}", engine_args(c.argv)) for c in launch_plan(spec) if c.role != "router"
        ]
    seed = load_cluster("h20-pp2", CLUSTERS)  # pinned: rendered for the seed's SGLang
    seed_decode = next(c for c in launch_plan(seed) if c.name == "decode-0")
    answers = refused_by(python, [args for _, args in servers] + [engine_args(seed_decode.argv)])
    print(f"{len(servers)} server command lines of {', '.join(SHIPPED)} parsed by SGLang 0.5.23")
    assert {where: flags for (where, _), flags in zip(servers, answers, strict=False) if flags} == {}
    assert answers[-1] == ["--disaggregation-prefill-pp"]
    print(refusals(seed, {"decode-0": answers[-1]}, "0.5.23", "(python3 on qjhs2)"))


def test_bring_up_refuses_a_flag_or_version_the_hosts_do_not_take(real_sglang: Path, tmp_path: Path):
    folder = tmp_path / "clusters"
    path = real_cluster_copy("cpu-1p1d", folder, home=real_sglang, baseline=None)
    data = yaml.safe_load(path.read_text())
    data["decode"][0]["extra_args"] += ["--disaggregation-prefill-pp", "1"]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    said: list[str] = []
    topology = Topology(load_cluster("cpu-1p1d", folder), tmp_path / "runs", say=said.append)
    with pytest.raises(BringUpError) as err:
        topology.up()
    text = str(err.value)
    assert (
        text.startswith("cannot bring up cpu-1p1d: sglang 0.5.23 (") and "does not accept this flag" in text
    )
    assert "  decode-0: --disaggregation-prefill-pp\nNothing was started." in text, text
    assert not list((tmp_path / "runs").glob("*.pid")) and topology.running == []
    # the answer is kept for the next bring-up: it asks nothing again
    said.clear()
    with pytest.raises(BringUpError, match="does not accept this flag"):
        Topology(load_cluster("cpu-1p1d", folder), tmp_path / "runs2", say=said.append).up()
    assert not any("checking the flags" in line for line in said), said

    data["decode"][0]["extra_args"] = data["decode"][0]["extra_args"][:-2]
    data["engine_version"] = "0.5.6.post2"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(BringUpError) as err:
        Topology(load_cluster("cpu-1p1d", folder), tmp_path / "runs3", say=said.append).up()
    assert "sglang versions found: cpu (" in str(
        err.value
    ) and "): 0.5.23; expected engine_version 0.5.6.post2" in str(err.value)
