"""Every malformed cluster file in tests/data/bad_clusters/ gets one clear error: the file, the
line and the field, what is wrong, and no traceback. Plus a fuzzer: the loader raises nothing but
ClusterFileError, whatever the text.

Hostile files too — alias bombs, deep nesting, huge scalars and files, long integers, binary junk,
paths that are not files (the stored ones are tests/data/bad_clusters/hostile_*.yaml, the big ones
are made here) — each loaded in a child process: the same clean error, with a bound on the child's
peak memory and a generous timeout that only catches hangs (the machine is too noisy to time)."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_pd.cluster.spec import load_cluster, parse_cluster
from pytest_pd.errors import ClusterFileError

REPO = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).parent / "data" / "bad_clusters"
FILES = sorted(p for p in CORPUS.glob("*.yaml") if not p.name.startswith("hostile_"))
HOSTILE_FILES = sorted(CORPUS.glob("hostile_*.yaml"))  # loaded in a child: see HOSTILE
GOOD = (REPO / "clusters" / "h20-pp2.yaml").read_text()

PEAK_RSS_LIMIT_MB = 500
HANG_LIMIT_S = 30
# The child's address space is capped too, so a regression fails with MemoryError instead of
# taking the machine's memory (the alias bomb grew to 14.5 GB before the loader was bounded).
CHILD_ADDRESS_SPACE = 3 * 2**30


def expectation(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name}: first line must say what to expect"
    return first[len("# expect: "):]


def test_corpus_is_large_enough():
    assert len(FILES) >= 25
    assert len(HOSTILE_FILES) >= 10


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_bad_cluster_file_is_explained(path: Path):
    with pytest.raises(ClusterFileError) as info:
        load_cluster(str(path), CORPUS)
    message = str(info.value)
    assert str(path) in message, message
    assert expectation(path) in message, message
    assert "Traceback" not in message and "pydantic" not in message.lower()
    assert "line " in message or f"{path.name}:" in message


# --------------------------------------------------------------------------- hostile shapes


def alias_bomb(shape: str, width: int, levels: int) -> str:
    """'Billion laughs': each level repeats the one below ``width`` times, through aliases."""
    items = ", ".join(["lol"] * width)
    lines = [f"l0: &l0 [{items}]" if shape == "sequence" else
             "l0: &l0 {" + ", ".join(f"k{i}: lol" for i in range(width)) + "}"]
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
    Hostile("alias_bomb_12x12_sequence", holding(alias_bomb("sequence", 12, 12)), "more than 20,000 values by this line"),
    Hostile("alias_bomb_12x12_mapping", holding(alias_bomb("mapping", 12, 12)), "more than 20,000 values by this line"),
    Hostile("alias_bomb_12x12_merge_key", holding(alias_bomb("merge", 12, 12)), "more than 20,000 values by this line"),
    Hostile("alias_bomb_1000x1000", holding(alias_bomb("sequence", 1000, 2)), ":2: more than 20,000 values"),
    Hostile("deep_flow_sequence_5000", holding(nesting("flow_sequence", 5000)), ":1: nested 65 levels deep"),
    Hostile("deep_flow_mapping_5000", holding(nesting("flow_mapping", 5000)), ":1: nested 65 levels deep"),
    Hostile("deep_block_sequence_5000", holding(nesting("block_sequence", 5000)), ":2: nested 65 levels deep"),
    Hostile("deep_block_mapping_600", holding(nesting("block_mapping", 600)), ":65: nested 65 levels deep"),
    Hostile("huge_scalar", holding("description: " + "a" * 200_000 + "\n"), ":1: a value of 200,000 characters"),
    Hostile("huge_folded_scalar", holding("description: >\n" + "  words words\n" * 15_000), ":1: a value of 180,000 characters"),
    Hostile("huge_file", holding("# a comment\n" * 300_000), "the file has 3,600,000 bytes, more than the 262,144"),
    Hostile("huge_sparse_file", sparse_file, "the file has 10,737,418,240 bytes"),
    Hostile("many_values", holding("prefill: [" + ",".join(["1"] * 120_000) + "]\n"), ":1: more than 20,000 values"),
    Hostile("long_integer", holding("router: {port: " + "9" * 5000 + "}\n"), ":1: a number of 5,000 characters"),
    Hostile("long_integer_tagged", holding("router: {port: !!int '" + "9" * 5000 + "'}\n"), ":1: a number of 5,000 characters"),
    Hostile("long_float", holding("router: {readiness_timeout_s: 1." + "5" * 5000 + "}\n"), ":1: a number of 5,002 characters"),
    Hostile("random_bytes", holding(random.Random(0).randbytes(64 * 1024)), "a NUL byte at byte offset"),
    Hostile("nul_bytes", holding(b"\0" * 4096), ":1: a NUL byte at byte offset 0"),
    Hostile("invalid_utf8", holding(b"name: x\ndescription: caf\xe9\n"), ":2: not UTF-8 text (byte offset 24: e9 0a)"),
    Hostile("utf16_bom", holding(GOOD.encode("utf-16")), ":1: starts with a UTF-16 byte order mark"),
    Hostile("utf16_without_bom", holding(GOOD.encode("utf-16-le")), ":1: a NUL byte at byte offset 1"),
    Hostile("control_character", holding("name: x\ndescription: bell\x07\n"), ":2: control character U+0007"),
    Hostile("directory", directory, "is a directory, not a file"),
    Hostile("fifo", fifo, "is a named pipe (FIFO), not a file"),
    Hostile("dangling_symlink", symlink("nowhere.yaml"), "is a symbolic link to nowhere.yaml, which does not exist"),
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
from pytest_pd.cluster.spec import load_cluster
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
    done = subprocess.run([*prefix, sys.executable, "-c", CHILD, argument, str(cluster_dir),
                           str(CHILD_ADDRESS_SPACE)], cwd=REPO, capture_output=True, text=True,
                          timeout=HANG_LIMIT_S)
    assert done.returncode == 0 and done.stdout.strip(), done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", HOSTILE, ids=lambda c: c.name)
def test_hostile_file_gets_a_clean_error_in_bounded_memory(case: Hostile, tmp_path: Path):
    prefix = child_prefix(case)
    if prefix is None:
        pytest.skip("runs as root, which reads any file, and setpriv is missing")
    argument = case.make(tmp_path)
    outcome = load_in_child(argument, tmp_path, prefix)
    message = outcome["message"]
    assert outcome["error"] == "ClusterFileError", outcome
    assert argument in message, message
    assert case.expect in message, message
    assert "Traceback" not in message and "\n" not in message
    assert outcome["peak_rss_mb"] < PEAK_RSS_LIMIT_MB, outcome


# Runs a command, then prints the peak RSS of the largest process it waited for (a small parent:
# a child's ru_maxrss starts at its parent's RSS at fork).
PEAK_OF_COMMAND = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
                   "print('peak_rss_mb', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024); "
                   "sys.exit(code)")


def test_pytest_session_on_an_alias_bomb_stops_at_once_with_the_message(tmp_path: Path):
    """The loader the plugin reaches is the bounded one (the bomb used to grow to 14.5 GB)."""
    bomb = CORPUS / "hostile_alias_bomb_mapping.yaml"
    done = subprocess.run(
        [sys.executable, "-c", PEAK_OF_COMMAND, sys.executable, "-m", "pytest", "suites/",
         f"--cluster={bomb}", "-x", "-p", "no:cacheprovider", f"--html={tmp_path / 'report.html'}",
         f"--pd-results-dir={tmp_path / 'results'}", f"--pd-run-dir={tmp_path / 'runs'}"],
        cwd=REPO, capture_output=True, text=True, timeout=HANG_LIMIT_S * 2)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out  # tests errored: pytest's exit code for failures
    assert f"{bomb}:13: more than 20,000 values by this line" in out, out
    assert "Traceback" not in out and "MemoryError" not in out and "RecursionError" not in out
    peak = float(re.search(r"^peak_rss_mb (\S+)$", out, re.M).group(1))
    assert peak < PEAK_RSS_LIMIT_MB, out


ANCHORED = """\
name: anchored
launcher: local
engine: sglang
model: {path: /models/m}
hosts:
  a: {address: 127.0.0.1}
env: &env {NCCL_DEBUG: INFO, NCCL_IB_TIMEOUT: 22}
server_defaults: &defaults {tp: 1, page_size: 64, env: *env}
prefill:
  - {<<: *defaults, host: a, port: 30000, bootstrap_port: 8998}
decode:
  - {<<: *defaults, host: a, port: 30001, page_size: 32}
router: {port: 8000, env: *env}
"""


def test_shared_blocks_through_anchors_and_merge_keys_still_load(tmp_path: Path):
    (tmp_path / "anchored.yaml").write_text(ANCHORED)
    spec = load_cluster("anchored", tmp_path)
    env = {"NCCL_DEBUG": "INFO", "NCCL_IB_TIMEOUT": "22"}
    assert spec.env == env and spec.router.env == env
    assert spec.servers("prefill")[0].page_size == 64
    assert spec.servers("decode")[0].page_size == 32  # set next to the merge: not a duplicate
    assert spec.servers("decode")[0].env == env


def test_a_folder_given_as_the_cluster_file_says_so_and_lists_its_clusters():
    with pytest.raises(ClusterFileError) as info:
        load_cluster(f"{REPO / 'clusters'}/", REPO)  # `--cluster=clusters/`
    message = str(info.value)
    assert f"cluster file {REPO / 'clusters'} is a directory, not a file" in message, message
    assert f"{REPO / 'clusters' / 'cpu-1p1d.yaml'}" in message
    assert f"--cluster-dir={REPO / 'clusters'}" in message


def test_a_cluster_name_whose_file_is_a_fifo_says_so(tmp_path: Path):
    os.mkfifo(tmp_path / "piped.yaml")
    with pytest.raises(ClusterFileError, match=r"piped\.yaml is a named pipe \(FIFO\), not a file"):
        load_cluster("piped", tmp_path)


# --------------------------------------------------------------------------- fuzz

yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                         st.floats(allow_nan=True), st.text(max_size=20))
yaml_values = st.recursive(
    yaml_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=20)
known_keys = st.sampled_from(["name", "launcher", "engine", "model", "hosts", "env", "prefill",
                              "decode", "router", "sim", "server_defaults", "baseline"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.one_of(known_keys, st.text(max_size=10)), yaml_values, max_size=8))
def test_fuzz_structured_documents(tmp_path_factory, document):
    text = yaml.safe_dump(document, allow_unicode=True)
    try:
        parse_cluster(text, tmp_path_factory.mktemp("fuzz") / "fuzz.yaml")
    except ClusterFileError:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(GOOD)), st.integers(0, 40), st.text(max_size=8))
def test_fuzz_mutated_real_file(tmp_path_factory, at, cut, insert):
    text = GOOD[:at] + insert + GOOD[at + cut:]
    try:
        parse_cluster(text, tmp_path_factory.mktemp("fuzz") / "h20-pp2.yaml")
    except ClusterFileError:
        pass


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["sequence", "mapping", "merge"]), st.integers(1, 14), st.integers(1, 14))
def test_fuzz_alias_bombs(tmp_path_factory, shape, width, levels):
    with pytest.raises(ClusterFileError):  # small ones too: none of them is a cluster file
        parse_cluster(alias_bomb(shape, width, levels), tmp_path_factory.mktemp("fuzz") / "b.yaml")


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(NESTINGS), st.integers(1, 3000))
def test_fuzz_deep_nesting(tmp_path_factory, shape, depth):
    with pytest.raises(ClusterFileError):
        parse_cluster(nesting(shape, depth), tmp_path_factory.mktemp("fuzz") / "deep.yaml")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=4096))
def test_fuzz_random_bytes(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "junk.yaml").write_bytes(data)
    with pytest.raises(ClusterFileError):
        load_cluster(str(folder / "junk.yaml"), folder)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(GOOD.encode())), st.binary(min_size=1, max_size=16))
def test_fuzz_bytes_spliced_into_real_file(tmp_path_factory, at, junk):
    folder = tmp_path_factory.mktemp("fuzz")
    good = GOOD.encode()
    (folder / "h20-pp2.yaml").write_bytes(good[:at] + junk + good[at:])
    try:
        load_cluster(str(folder / "h20-pp2.yaml"), folder)
    except ClusterFileError:
        pass


hostile_snippets = st.sampled_from(["&a ", "*a", "<<: *a\n", "<<: [*a, *a]", "[" * 70, "{a: " * 70,
                                    "- " * 70, "9" * 200, "2024-13-01", "!!int ", "!!float ",
                                    "!!timestamp ", "? ", "\x07", "\ufeff", "&a [*a]"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(GOOD)), hostile_snippets), min_size=1, max_size=4))
def test_fuzz_hostile_snippets_in_real_file(tmp_path_factory, insertions):
    text = GOOD
    for at, snippet in sorted(insertions, reverse=True):  # from the end: positions stay valid
        text = text[:at] + snippet + text[at:]
    try:
        parse_cluster(text, tmp_path_factory.mktemp("fuzz") / "h20-pp2.yaml")
    except ClusterFileError:
        pass
