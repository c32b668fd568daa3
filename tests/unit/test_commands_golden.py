"""`pytest-pd commands h20-*` must equal the seed report's commands flag for flag."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_pd.cli import main as cli_main
from tests.helpers.seed import flags, parse_env, rendered, seed_blocks

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("cluster", ["h20-pp2", "h20-tp8"])
def test_commands_equal_seed(cluster, capsys):
    seed = seed_blocks()
    env, commands = rendered(cluster, capsys)
    assert env == parse_env(seed["env"])
    assert list(env) == list(parse_env(seed["env"])), "env order follows the seed"
    assert set(commands) == {"prefill-0", "decode-0", "router"}
    for role in ("prefill", "decode"):
        expected = shlex.split(seed[f"{cluster} {role}"].replace("\\\n", " "))
        assert flags(commands[f"{role}-0"]) == flags(expected), role
    expected_router = shlex.split(seed["router"].replace("\\\n", " "))
    assert flags(commands["router"]) == flags(expected_router)


def test_cli_entry_point_prints_the_same(capsys):
    """The installed console script gives the same text as the in-process call."""
    cli_main(["commands", "h20-pp2", "--cluster-dir", str(REPO / "clusters")])
    in_process = capsys.readouterr().out
    out = subprocess.run(
        [
            str(Path(sys.executable).parent / "pytest-pd"),
            "commands",
            "h20-pp2",
            "--cluster-dir",
            str(REPO / "clusters"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out == in_process
    assert out.count("python -m sglang.launch_server") == 2
