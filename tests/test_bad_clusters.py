"""Every malformed cluster file in tests/data/bad_clusters/ gets one clear error: the file, the
line and the field, what is wrong, and no traceback. Plus a fuzzer: the loader raises nothing but
ClusterFileError, whatever the text."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_pd.cluster.spec import load_cluster, parse_cluster
from pytest_pd.errors import ClusterFileError

CORPUS = Path(__file__).parent / "data" / "bad_clusters"
FILES = sorted(CORPUS.glob("*.yaml"))
GOOD = (Path(__file__).parent.parent / "clusters" / "h20-pp2.yaml").read_text()


def expectation(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name}: first line must say what to expect"
    return first[len("# expect: "):]


def test_corpus_is_large_enough():
    assert len(FILES) >= 25


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_bad_cluster_file_is_explained(path: Path):
    with pytest.raises(ClusterFileError) as info:
        load_cluster(str(path), CORPUS)
    message = str(info.value)
    assert str(path) in message, message
    assert expectation(path) in message, message
    assert "Traceback" not in message and "pydantic" not in message.lower()
    assert "line " in message or f"{path.name}:" in message


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
