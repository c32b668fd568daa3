"""`pytest-pd commands h20-*` must equal the seed report's commands flag for flag."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_pd.cli import main as cli_main

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "tests" / "data" / "seed_commands.sh"


def seed_blocks() -> dict[str, str]:
    blocks: dict[str, list[str]] = {}
    current = None
    for line in SEED.read_text(encoding="utf-8").splitlines():
        if line.startswith("### "):
            current = line[4:].split(" (")[0]
            blocks[current] = []
        elif current is not None:
            blocks[current].append(line)
    return {k: "\n".join(v) for k, v in blocks.items()}


def parse_env(text: str) -> dict[str, str]:
    env = {}
    for line in text.splitlines():
        if line.startswith("export "):
            key, _, value = shlex.split(line[len("export ") :])[0].partition("=")
            env[key] = value
    return env


def flags(argv: list[str]) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]]:
    """(program, {flag: values}) with the values each flag takes, order of flags ignored."""
    head: list[str] = []
    out: dict[str, tuple[str, ...]] = {}
    current = None
    for arg in argv:
        if arg.startswith("--"):
            assert arg not in out, f"flag {arg} given twice"
            current = arg
            out[arg] = ()
        elif current is None:
            head.append(arg)
        else:
            out[current] += (arg,)
    return tuple(head), out


def rendered(cluster: str, capsys) -> tuple[dict[str, str], dict[str, list[str]]]:
    assert cli_main(["commands", cluster, "--cluster-dir", str(REPO / "clusters")]) == 0
    text = capsys.readouterr().out
    commands: dict[str, list[str]] = {}
    name = None
    for line in text.splitlines():
        if line.startswith("# ") and " on " in line:
            name = line[2:].split(" on ")[0]
        elif line and not line.startswith(("#", "export ")):
            commands[name] = shlex.split(line)
    return parse_env(text), commands


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
