"""The seed report's launch commands (tests/data/seed_commands.sh), block by block, and how two
command lines are compared: flag for flag, the order of flags ignored."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

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


def seed_argv(label: str) -> list[str]:
    """The seed's command line of block ``label`` ("h20-pp2 prefill", "router")."""
    return shlex.split(seed_blocks()[label].replace("\\\n", " "))


def rendered(cluster: str, capsys: Any) -> tuple[dict[str, str], dict[str, list[str]]]:
    """What `pytest-pd commands CLUSTER` prints (a name in clusters/ or a file's path): its
    exported environment and each process's command line by name."""
    from pytest_pd.cli import main as cli_main

    assert cli_main(["commands", cluster, "--cluster-dir", str(REPO / "clusters")]) == 0
    text = capsys.readouterr().out
    commands: dict[str, list[str]] = {}
    name = None
    for line in text.splitlines():
        if line.startswith("# ") and " on " in line:
            name = line[2:].split(" on ")[0]
        elif line and not line.startswith(("#", "export ")):
            commands[str(name)] = shlex.split(line)
    return parse_env(text), commands
