"""`pytest-pd import`: launch lines as a team pastes them (the seed report's markdown, a shell
script with ssh, `pytest-pd commands`' own output) become cluster files that render those exact
commands back; a line it cannot place is an error naming it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from pytest_pd.cli import main as cli_main
from pytest_pd.cluster.commands import launch_plan, render_commands
from pytest_pd.cluster.importer import import_cluster
from pytest_pd.cluster.spec_file import load_cluster
from tests.helpers.seed import flags, parse_env, rendered, seed_argv, seed_blocks

REPO = Path(__file__).resolve().parents[2]


def seed_page(config: str) -> str:
    """One configuration of the seed report as its markdown has it: the environment block, each
    server's block under a line naming its node in parentheses, the router's block."""
    blocks = seed_blocks()

    def fenced(label: str) -> str:
        return "```bash\n" + blocks[label].strip() + "\n```\n"

    return (
        f"## {config}\n\n### Network environment\n\n" + fenced("env") + "\n"
        "**Prefill node launch command (qjhs0)**:\n" + fenced(f"{config} prefill") + "\n"
        "**Decode node launch command (qjhs2)**:\n" + fenced(f"{config} decode") + "\n"
        "### Router launch command\n\n" + fenced("router")
    )


@pytest.mark.parametrize("config", ["h20-pp2", "h20-tp8"])
def test_the_seed_reports_commands_come_back_flag_for_flag(config, tmp_path, capsys):
    page = tmp_path / f"{config}.md"
    page.write_text(seed_page(config), encoding="utf-8")
    assert cli_main(["import", str(page), "--cluster-dir", str(tmp_path / "clusters")]) == 0
    written = tmp_path / "clusters" / f"{config}.yaml"
    assert f"{written}: cluster {config}" in capsys.readouterr().out
    env, commands = rendered(str(written), capsys)
    assert env == parse_env(seed_blocks()["env"])
    assert flags(commands["prefill-0"]) == flags(seed_argv(f"{config} prefill"))
    assert flags(commands["decode-0"]) == flags(seed_argv(f"{config} decode"))
    assert flags(commands["router"]) == flags(seed_argv("router"))
    # and they are the shipped cluster file's commands, which the seed's own golden test holds
    _, shipped = rendered(config, capsys)
    assert {k: flags(v) for k, v in commands.items()} == {k: flags(v) for k, v in shipped.items()}
    data = yaml.safe_load(written.read_text())
    assert data["hosts"] == {"qjhs0": {"address": "172.31.0.5"}, "qjhs2": {"address": "172.31.0.4"}}
    assert data["launcher"] == "ssh" and data["router"]["listen"] == "0.0.0.0"
    if config == "h20-pp2":  # the decode's --disaggregation-prefill-pp: gone after SGLang 0.5.9
        assert data["engine_version"] == "0.5.9" and data["decode"][0]["prefill_pp"] == 2
        assert "pin the one you run" in written.read_text()
    else:
        assert "engine_version" not in data


@pytest.mark.parametrize("cluster", ["cpu-1p1d", "cpu-2p1d", "cpu-pp2", "cpu-tp2", "h20-pp2", "h20-tp8"])
def test_every_shipped_sglang_cluster_survives_its_own_commands(cluster, tmp_path):
    """What `pytest-pd commands` writes reads back into a cluster file that renders the same
    processes: each command line and its environment."""
    spec = load_cluster(cluster, REPO / "clusters")
    text = import_cluster(render_commands(spec, local_python=sys.executable), name=cluster, source="x.sh")
    path = tmp_path / f"{cluster}.yaml"
    path.write_text(text)
    again = load_cluster(str(path), tmp_path)
    before, after = launch_plan(spec), launch_plan(again)
    assert [(c.name, c.host, c.argv[1:], c.env) for c in after] == [
        (c.name, c.host, c.argv[1:], c.env) for c in before
    ]
    assert again.hosts.keys() == spec.hosts.keys()


SCRIPT = """\
#!/usr/bin/env bash
export NCCL_IB_HCA=mlx5
# 2-node decode, launched by hand
ssh -p 2222 me@gpu-a "cd /srv && nohup /opt/venv/bin/python -m sglang.launch_server --model-path /m \\
    --disaggregation-mode prefill --host 10.0.0.1 --port 30000 --disaggregation-bootstrap-port 8998 \\
    --tp-size=8 --mem-fraction-static 0.90 --trust-remote-code --new-flag x > prefill.log 2>&1 &"
ssh gpu-b 'CUDA_VISIBLE_DEVICES=0,1,2,3 python3 -m sglang.launch_server --model-path /m --disaggregation-mode decode --host 0.0.0.0 --port 30001 --tp-size 8 --nnodes 2 --node-rank 0 --dist-init-addr 10.0.0.2:5000'
# gpu-c (10.0.0.3)
ssh gpu-c 'python3 -m sglang.launch_server --model-path /m --disaggregation-mode decode --host 0.0.0.0 --port 30001 --tp-size 8 --nnodes 2 --node-rank 1 --dist-init-addr 10.0.0.2:5000'
sleep 60
# router on gpu-a
python -m sglang_router.launch_router --pd-disaggregation --prefill http://10.0.0.1:30000 8998 \\
    --decode http://10.0.0.2:30001 --host=0.0.0.0 --port=8000 --policy cache_aware
"""


def test_a_hand_written_script_with_ssh_and_a_two_node_decode():
    data = yaml.safe_load(import_cluster(SCRIPT, name="team", source="launch.sh"))
    assert data["hosts"] == {
        "gpu-a": {"address": "10.0.0.1", "python": "/opt/venv/bin/python"},
        "gpu-b": {"address": "10.0.0.2"},  # where the router reaches the decode that listens anywhere
        "gpu-c": {"address": "10.0.0.3"},
    }
    (decode,) = data["decode"]
    assert decode["hosts"] == ["gpu-b", "gpu-c"] and decode["dist_init_addr"] == "10.0.0.2:5000"
    assert decode["env"] == {"CUDA_VISIBLE_DEVICES": "0,1,2,3"}
    assert data["prefill"][0]["extra_args"] == ["--new-flag", "x"]  # kept, never dropped
    assert data["prefill"][0]["mem_fraction_static"] == 0.9  # a number, as a cluster file holds it
    assert data["server_defaults"] == {"tp": 8}  # both servers' --tp-size (one of them as --tp-size=8)
    assert data["prefill"][0]["trust_remote_code"] is True  # a switch, given alone
    assert data["router"] == {"host": "gpu-a", "listen": "0.0.0.0", "port": 8000, "policy": "cache_aware"}
    assert data["env"] == {"NCCL_IB_HCA": "mlx5"}


@pytest.mark.parametrize(
    ("script", "said"),
    [
        ("source /opt/venv/bin/activate\n", "line 1: not a launch line pytest-pd can place"),
        (
            "python -m vllm.entrypoints.openai.api_server --model m\n",
            "line 1: neither a server pytest-pd can import (sglang.launch_server) nor a router",
        ),
        ("python -m sglang_router.launch_router --pd-disaggregation\n", "no server launch line found"),
        (
            "# on a (10.0.0.1)\npython -m sglang.launch_server --model-path /m --disaggregation-mode prefill --port\n",
            "line 2: --port without its value",
        ),
        (
            "# on a (10.0.0.1)\npython -m sglang.launch_server --model-path /m --disaggregation-mode prefill --port 1\n"
            "# on b (10.0.0.2)\npython -m sglang.launch_server --model-path /m --disaggregation-mode decode --port 2\n"
            "python -m sglang_router.launch_router --pd-disaggregation --prefill http://10.0.0.9:1 --decode http://10.0.0.2:2\n",
            "line 5: the router names a prefill server no line starts: --prefill http://10.0.0.9:1",
        ),
        (
            "python -m sglang.launch_server --model-path /m --disaggregation-mode prefill --port 1\n"
            "python -m sglang.launch_server --model-path /m --disaggregation-mode decode --port 2\n",
            "no address for host node0",
        ),
    ],
    ids=["shell-line", "other-engine", "router-only", "flag-without-value", "unknown-worker", "no-address"],
)
def test_what_cannot_be_placed_is_named(script, said):
    with pytest.raises(ValueError, match=None) as err:
        import_cluster(script, name="x", source="x.sh")
    assert said in str(err.value), err.value


def test_an_existing_file_is_kept_without_force(tmp_path, capsys):
    page = tmp_path / "h20-tp8.md"
    page.write_text(seed_page("h20-tp8"), encoding="utf-8")
    target = tmp_path / "team-tp8.yaml"
    target.write_text("mine\n")
    assert cli_main(["import", str(page), "-o", str(target)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err and target.read_text() == "mine\n"
    assert cli_main(["import", str(page), "-o", str(target), "--name", "other"]) == 2
    assert "name it 'team-tp8' or write other.yaml" in capsys.readouterr().err
    assert cli_main(["import", str(page), "-o", str(target), "--force"]) == 0
    assert load_cluster(str(target), tmp_path).name == "team-tp8"
