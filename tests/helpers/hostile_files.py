"""Hostile cluster files (alias bombs, deep nesting, huge scalars and files, long numbers, binary
junk, paths that are not files), generated or stored in tests/data/bad_clusters/hostile_*.yaml, and
a loader that runs each in a fresh interpreter: shared by tests/integration/test_bad_clusters.py
and benchmarks/hostile_cluster_files.py."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "data" / "bad_clusters"
HOSTILE_FILES = sorted(CORPUS.glob("hostile_*.yaml"))  # loaded in a child: see HOSTILE
HANG_LIMIT_S = 30
GOOD = (REPO / "clusters" / "h20-pp2.yaml").read_text()


def expectation(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name}: first line must say what to expect"
    return first[len("# expect: ") :]


# The child's address space is capped too, so a regression fails with MemoryError instead of
# taking the machine's memory (the alias bomb grew to 14.5 GB before the loader was bounded).
CHILD_ADDRESS_SPACE = 3 * 2**30


def alias_bomb(shape: str, width: int, levels: int) -> str:
    """'Billion laughs': each level repeats the one below ``width`` times, through aliases."""
    items = ", ".join(["lol"] * width)
    lines = [
        f"l0: &l0 [{items}]"
        if shape == "sequence"
        else "l0: &l0 {" + ", ".join(f"k{i}: lol" for i in range(width)) + "}"
    ]
    for level in range(1, levels):
        below = [f"*l{level - 1}"] * width
        if shape == "sequence":
            body = "[" + ", ".join(below) + "]"
        elif shape == "mapping":
            body = "{" + ", ".join(f"k{i}: {alias}" for i, alias in enumerate(below)) + "}"
        else:  # merge keys
            body = "{<<: [" + ", ".join(below) + "]}"
        lines.append(f"l{level}: &l{level} {body}")
    return "\n".join(lines) + "\n"


NESTINGS = ["flow_sequence", "flow_mapping", "block_sequence", "block_mapping"]


def nesting(shape: str, depth: int) -> str:
    """A value ``depth`` collections deep."""
    if shape == "flow_sequence":
        return "prefill: " + "[" * depth + "]" * depth + "\n"
    if shape == "flow_mapping":
        return "router: " + "{a: " * depth + "1" + "}" * depth + "\n"
    if shape == "block_sequence":
        return "decode:\n" + "- " * depth + "x\n"
    return "".join(" " * i + "k:\n" for i in range(depth)) + " " * depth + "k: 1\n"


# --------------------------------------------------------------------------- hostile cases


@dataclass(frozen=True)
class Hostile:
    name: str
    make: Callable[[Path], str]  # creates the case in an empty folder; returns the --cluster value
    expect: str  # part of the error message
    unprivileged: bool = False  # must run without root's right to read anything


def cluster_file(folder: Path, content: str | bytes) -> str:
    path = folder / "hostile.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return str(path)


def holding(content: str | bytes) -> Callable[[Path], str]:
    return lambda folder: cluster_file(folder, content)


def directory(folder: Path) -> str:
    (folder / "hostile.yaml").mkdir()
    return str(folder / "hostile.yaml")


def fifo(folder: Path) -> str:
    os.mkfifo(folder / "hostile.yaml")  # open() would wait for a writer forever
    return str(folder / "hostile.yaml")


def symlink(target: str) -> Callable[[Path], str]:
    def make(folder: Path) -> str:
        (folder / "hostile.yaml").symlink_to(target)
        return str(folder / "hostile.yaml")

    return make


def sparse_file(folder: Path) -> str:
    with (folder / "hostile.yaml").open("wb") as fh:
        fh.truncate(10 * 2**30)  # 10 GB that take no disk space
    return str(folder / "hostile.yaml")


def unreadable(folder: Path) -> str:
    path = Path(cluster_file(folder, GOOD))
    path.chmod(0)
    return str(path)


def stored(path: Path) -> Hostile:
    return Hostile(path.stem, lambda folder: str(path), expectation(path))


GENERATED = [
    Hostile(
        "alias_bomb_12x12_sequence",
        holding(alias_bomb("sequence", 12, 12)),
        "more than 20,000 values by this line",
    ),
    Hostile(
        "alias_bomb_12x12_mapping",
        holding(alias_bomb("mapping", 12, 12)),
        "more than 20,000 values by this line",
    ),
    Hostile(
        "alias_bomb_12x12_merge_key",
        holding(alias_bomb("merge", 12, 12)),
        "more than 20,000 values by this line",
    ),
    Hostile("alias_bomb_1000x1000", holding(alias_bomb("sequence", 1000, 2)), ":2: more than 20,000 values"),
    Hostile("deep_flow_sequence_5000", holding(nesting("flow_sequence", 5000)), ":1: nested 65 levels deep"),
    Hostile("deep_flow_mapping_5000", holding(nesting("flow_mapping", 5000)), ":1: nested 65 levels deep"),
    Hostile(
        "deep_block_sequence_5000", holding(nesting("block_sequence", 5000)), ":2: nested 65 levels deep"
    ),
    Hostile("deep_block_mapping_600", holding(nesting("block_mapping", 600)), ":65: nested 65 levels deep"),
    Hostile(
        "huge_scalar", holding("description: " + "a" * 200_000 + "\n"), ":1: a value of 200,000 characters"
    ),
    Hostile(
        "huge_folded_scalar",
        holding("description: >\n" + "  words words\n" * 15_000),
        ":1: a value of 180,000 characters",
    ),
    Hostile(
        "huge_file", holding("# a comment\n" * 300_000), "the file has 3,600,000 bytes, more than the 262,144"
    ),
    Hostile("huge_sparse_file", sparse_file, "the file has 10,737,418,240 bytes"),
    Hostile(
        "many_values",
        holding("prefill: [" + ",".join(["1"] * 120_000) + "]\n"),
        ":1: more than 20,000 values",
    ),
    Hostile(
        "long_integer", holding("router: {port: " + "9" * 5000 + "}\n"), ":1: a number of 5,000 characters"
    ),
    Hostile(
        "long_integer_tagged",
        holding("router: {port: !!int '" + "9" * 5000 + "'}\n"),
        ":1: a number of 5,000 characters",
    ),
    Hostile(
        "long_float",
        holding("router: {readiness_timeout_s: 1." + "5" * 5000 + "}\n"),
        ":1: a number of 5,002 characters",
    ),
    Hostile("random_bytes", holding(random.Random(0).randbytes(64 * 1024)), "a NUL byte at byte offset"),
    Hostile("nul_bytes", holding(b"\0" * 4096), ":1: a NUL byte at byte offset 0"),
    Hostile(
        "invalid_utf8",
        holding(b"name: x\ndescription: caf\xe9\n"),
        ":2: not UTF-8 text (byte offset 24: e9 0a)",
    ),
    Hostile("utf16_bom", holding(GOOD.encode("utf-16")), ":1: starts with a UTF-16 byte order mark"),
    Hostile("utf16_without_bom", holding(GOOD.encode("utf-16-le")), ":1: a NUL byte at byte offset 1"),
    Hostile("control_character", holding("name: x\ndescription: bell\x07\n"), ":2: control character U+0007"),
    Hostile("directory", directory, "is a directory, not a file"),
    Hostile("fifo", fifo, "is a named pipe (FIFO), not a file"),
    Hostile(
        "dangling_symlink",
        symlink("nowhere.yaml"),
        "is a symbolic link to nowhere.yaml, which does not exist",
    ),
    Hostile("symlink_loop", symlink("hostile.yaml"), "is a symbolic link that loops"),
    Hostile("device", lambda folder: "/dev/zero", "is a character device, not a file"),
    Hostile("unreadable_file", unreadable, "permission denied", unprivileged=True),
]
HOSTILE = GENERATED + [stored(p) for p in HOSTILE_FILES]


def child_prefix(case: Hostile) -> list[str] | None:
    """What to run the child under; None when this machine cannot run the case."""
    if not case.unprivileged or os.geteuid() != 0:
        return []
    if shutil.which("setpriv"):  # root without the capabilities that let it read any file
        return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]
    return None


CHILD = """
import json, resource, sys, time
from pathlib import Path
hard = resource.getrlimit(resource.RLIMIT_AS)[1]
cap = int(sys.argv[3]) if hard == resource.RLIM_INFINITY else min(int(sys.argv[3]), hard)
resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
from pytest_pd.cluster.spec_file import load_cluster
started = time.perf_counter()
try:
    load_cluster(sys.argv[1], Path(sys.argv[2]))
    outcome = {"error": None, "message": ""}
except Exception as exc:  # reported, not raised: the parent judges
    outcome = {"error": type(exc).__name__, "message": str(exc)}
outcome["seconds"] = time.perf_counter() - started
# VmHWM, not ru_maxrss: Linux carries the parent's RSS at fork into the child's ru_maxrss.
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
outcome["peak_rss_mb"] = peak_kb / 1024
print(json.dumps(outcome))
"""


def load_in_child(argument: str, cluster_dir: Path, prefix: list[str]) -> dict:
    """``load_cluster(argument, cluster_dir)`` in a fresh interpreter: its error type and message,
    the seconds to the error and the child's peak RSS."""
    done = subprocess.run(
        [*prefix, sys.executable, "-c", CHILD, argument, str(cluster_dir), str(CHILD_ADDRESS_SPACE)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=HANG_LIMIT_S,
    )
    assert done.returncode == 0 and done.stdout.strip(), done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])
