"""Launch flags rendered for the engine version that will run them: the seed's h20-pp2 pins SGLang
0.5.6.post2 (its decode server states the prefill's pp size), current SGLang takes no
--disaggregation-prefill-pp; the spec check follows the version; the refusal message names the
server, the flag, the version and what to change."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pytest_pd.cluster.commands import launch_plan
from pytest_pd.cluster.engine_check import engine_args, flag_names, refusals
from pytest_pd.cluster.engines.sglang.argv import takes_prefill_pp
from pytest_pd.cluster.spec_file import load_cluster
from pytest_pd.errors import ClusterFileError

REPO = Path(__file__).resolve().parents[2]


def decode_argv(spec) -> list[str]:
    return next(c.argv for c in launch_plan(spec, local_python="python") if c.name == "decode-0")


def test_the_seed_cluster_pins_its_sglang_and_renders_its_flag():
    spec = load_cluster("h20-pp2", REPO / "clusters")
    assert spec.engine_version == "0.5.6.post2"
    argv = decode_argv(spec)
    assert argv[argv.index("--disaggregation-prefill-pp") + 1] == "2"


@pytest.mark.parametrize("version", [None, "0.5.23"])
def test_current_sglang_gets_no_prefill_pp_flag(version):
    spec = load_cluster("h20-pp2", REPO / "clusters").model_copy(update={"engine_version": version})
    assert "--disaggregation-prefill-pp" not in decode_argv(spec)
    assert not takes_prefill_pp(version)


def test_versions_around_the_change():
    assert takes_prefill_pp("0.5.6.post2") and takes_prefill_pp("0.5.9") and takes_prefill_pp("0.4.0")
    assert not takes_prefill_pp("0.5.10") and not takes_prefill_pp("0.5.23")
    assert not takes_prefill_pp("not-a-version")


def test_prefill_pp_is_required_only_where_the_version_takes_it(tmp_path: Path):
    data = yaml.safe_load((REPO / "clusters" / "h20-pp2.yaml").read_text())
    data.pop("baseline")
    del data["decode"][0]["prefill_pp"]
    (tmp_path / "h20-pp2.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ClusterFileError, match=r"decode\[0\]\.prefill_pp: prefill servers run pp=2"):
        load_cluster("h20-pp2", tmp_path)  # pinned 0.5.6.post2: the decode must say it
    data["engine_version"] = "0.5.23"
    (tmp_path / "h20-pp2.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    assert "--disaggregation-prefill-pp" not in decode_argv(load_cluster("h20-pp2", tmp_path))
    data["decode"][0]["prefill_pp"] = 4  # said, it must still be right
    (tmp_path / "h20-pp2.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ClusterFileError, match="not rendered: this SGLang learns it at bootstrap"):
        load_cluster("h20-pp2", tmp_path)


def test_a_version_that_is_not_a_string_says_so(tmp_path: Path):
    data = yaml.safe_load((REPO / "clusters" / "h20-tp8.yaml").read_text())
    data["engine_version"] = 0.5
    (tmp_path / "h20-tp8.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ClusterFileError, match="engine_version: expected a valid string"):
        load_cluster("h20-tp8", tmp_path)


def test_the_simulator_keeps_the_seed_flag():
    spec = load_cluster("sim-pp2", REPO / "clusters")
    assert spec.engine_version is None and "--disaggregation-prefill-pp" in decode_argv(spec)


def test_flags_of_a_command_and_the_refusal_message():
    argv = ["python", "-m", "sglang.launch_server", "--model-path", "/m", "--tp-size=2", "--x", "1", "--x"]
    assert engine_args(argv) == ["--model-path", "/m", "--tp-size=2", "--x", "1", "--x"]
    assert flag_names(engine_args(argv)) == ["--model-path", "--tp-size", "--x"]
    spec = load_cluster("h20-pp2", REPO / "clusters")
    text = refusals(spec, {"decode-0": ["--disaggregation-prefill-pp"]}, "0.5.23", "(python3 on qjhs2)")
    assert text.startswith(
        "cannot bring up h20-pp2: sglang 0.5.23 (python3 on qjhs2) does not accept this flag:\n"
        "  decode-0: --disaggregation-prefill-pp\nNothing was started."
    )
    assert "pin it with `engine_version:`" in text
