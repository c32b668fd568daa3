"""Every malformed cluster file in tests/data/bad_clusters/ gets one clear error: the file, the
line and the field, what is wrong, and no traceback. Plus a fuzzer: the loader raises nothing but
ClusterFileError, whatever the text.

Hostile files too — alias bombs, deep nesting, huge scalars and files, long integers, binary junk,
paths that are not files (the stored ones are tests/data/bad_clusters/hostile_*.yaml, the big ones
are made here) — each loaded in a child process: the same clean error, with a bound on the child's
peak memory and a generous timeout that only catches hangs (the machine is too noisy to time)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_pd.cluster.spec_file import load_cluster, parse_cluster
from pytest_pd.errors import ClusterFileError
from tests.helpers.hostile_files import (
    CORPUS,
    GOOD,
    HANG_LIMIT_S,
    HOSTILE,
    HOSTILE_FILES,
    NESTINGS,
    Hostile,
    alias_bomb,
    child_prefix,
    expectation,
    load_in_child,
    nesting,
)

REPO = Path(__file__).resolve().parents[2]
FILES = sorted(p for p in CORPUS.glob("*.yaml") if not p.name.startswith("hostile_"))

PEAK_RSS_LIMIT_MB = 500


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
PEAK_OF_COMMAND = (
    "import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
    "print('peak_rss_mb', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024); "
    "sys.exit(code)"
)


def test_pytest_session_on_an_alias_bomb_stops_at_once_with_the_message(tmp_path: Path):
    """The loader the plugin reaches is the bounded one (the bomb used to grow to 14.5 GB)."""
    bomb = CORPUS / "hostile_alias_bomb_mapping.yaml"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            PEAK_OF_COMMAND,
            sys.executable,
            "-m",
            "pytest",
            "suites/",
            f"--cluster={bomb}",
            "-x",
            "-p",
            "no:cacheprovider",
            f"--html={tmp_path / 'report.html'}",
            f"--pd-results-dir={tmp_path / 'results'}",
            f"--pd-run-dir={tmp_path / 'runs'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=HANG_LIMIT_S * 2,
    )
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

yaml_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.floats(allow_nan=True), st.text(max_size=20)
)
yaml_values = st.recursive(
    yaml_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
known_keys = st.sampled_from(
    [
        "name",
        "launcher",
        "engine",
        "model",
        "hosts",
        "env",
        "prefill",
        "decode",
        "router",
        "sim",
        "server_defaults",
        "baseline",
    ]
)


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
    text = GOOD[:at] + insert + GOOD[at + cut :]
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


hostile_snippets = st.sampled_from(
    [
        "&a ",
        "*a",
        "<<: *a\n",
        "<<: [*a, *a]",
        "[" * 70,
        "{a: " * 70,
        "- " * 70,
        "9" * 200,
        "2024-13-01",
        "!!int ",
        "!!float ",
        "!!timestamp ",
        "? ",
        "\x07",
        "\ufeff",
        "&a [*a]",
    ]
)


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
