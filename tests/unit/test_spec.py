"""Cluster files: the shipped ones validate; broken ones give one clear error with file and line."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pytest_pd.cluster.commands import launch_plan, render_commands
from pytest_pd.cluster.spec_file import load_cluster, parse_cluster
from pytest_pd.errors import ClusterFileError

REPO = Path(__file__).resolve().parents[2]
CLUSTERS = REPO / "clusters"

MINIMAL = """\
name: mini
launcher: local
engine: sglang
model: {path: /models/m}
hosts:
  a: {address: 127.0.0.1}
prefill:
  - {host: a, port: 30000, bootstrap_port: 8998, tp: 1}
decode:
  - {host: a, port: 30001, tp: 1}
router: {port: 8000}
"""


def parse(text: str, tmp_path: Path, name: str = "mini") -> object:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return parse_cluster(text, path)


def error_of(text: str, tmp_path: Path) -> str:
    with pytest.raises(ClusterFileError) as info:
        parse(text, tmp_path)
    return str(info.value)


@pytest.mark.parametrize("name", sorted(p.stem for p in CLUSTERS.glob("*.yaml")))
def test_shipped_clusters_validate(name):
    spec = load_cluster(name, CLUSTERS)
    assert spec.label == name
    plan = launch_plan(spec)
    assert [c.role for c in plan][-1] == "router"


def test_servers_sharing_a_host_take_their_own_gpus(tmp_path):
    text = MINIMAL.replace("{address: 127.0.0.1}", "{address: 127.0.0.1, gpus: 8}").replace(
        "port: 30001, tp: 1}", "port: 30001, tp: 4, base_gpu_id: 4}"
    )
    spec = parse(text, tmp_path)
    assert "--tp-size 4 --base-gpu-id 4" in render_commands(spec)


def test_minimal_file_parses(tmp_path):
    spec = parse(MINIMAL, tmp_path)
    assert spec.router_url == "http://127.0.0.1:8000"
    assert spec.servers("prefill")[0].bootstrap_port == 8998


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        (
            MINIMAL.replace("tp: 1}\ndecode", "tp: four}\ndecode"),
            8,
            "prefill[0].tp: expected a valid integer",
        ),
        (
            MINIMAL.replace("launcher: local", "launcher: local\nlaucher: ssh"),
            3,
            "unknown key 'laucher'; allowed here: name, description, baseline",
        ),
        (
            MINIMAL.replace("{address: 127.0.0.1}", "{address: 127.0.0.1, gpu: 8}"),
            6,
            "hosts.a.gpu: unknown key 'gpu'; allowed here: address, node, gpus",
        ),
        (
            MINIMAL.replace("launcher: local", "launcher: kubernetes"),
            2,
            "launcher: expected 'local', 'ssh', 'attach' or 'slurm'",
        ),
        (
            MINIMAL.replace("name: mini\n", "name: mini\nbaseline: nowhere\n"),
            2,
            "baseline cluster 'nowhere' has no file",
        ),
        (MINIMAL.replace("port: 30001", "port: 30000"), 10, "port 30000 on a is already used by prefill[0]"),
        (
            MINIMAL.replace("{host: a, port: 30001", "{host: b, port: 30001"),
            10,
            "decode[0].host: unknown host 'b'",
        ),
        (MINIMAL.replace("model: {path: /models/m}\n", ""), 1, "model: required field is missing"),
        (
            MINIMAL.replace("bootstrap_port: 8998, tp: 1", "bootstrap_port: 8998, tp: 1, pp: 2").replace(
                "engine: sglang\n", 'engine: sglang\nengine_version: "0.5.9"\n'
            ),
            11,
            "must say `prefill_pp: 2` (renders --disaggregation-prefill-pp)",
        ),
        (
            MINIMAL.replace("{address: 127.0.0.1}", "{address: 127.0.0.1, gpus: 4}").replace(
                "tp: 1}\ndecode", "tp: 8}\ndecode"
            ),
            8,
            "tp×pp needs 8 GPUs per node but host 'a' declares gpus: 4",
        ),
        (
            MINIMAL.replace("{address: 127.0.0.1}", "{address: 127.0.0.1, gpus: 8}").replace(
                " tp: 1}", " tp: 4}"
            ),
            10,
            "GPUs 0..3 on a overlap prefill[0]'s 0..3; give each server sharing a host its own base_gpu_id",
        ),
        (
            MINIMAL.replace("{address: 127.0.0.1}", "{address: 127.0.0.1, gpus: 8}").replace(
                "port: 30001, tp: 1}", "port: 30001, tp: 4, base_gpu_id: 6}"
            ),
            10,
            "tp×pp needs GPUs 6..9 per node but host 'a' declares gpus: 8",
        ),
        (MINIMAL.replace("127.0.0.1", "10.0.0.7"), 6, "address must be loopback"),
        (MINIMAL + "router: {port: 8001}\n", 12, "duplicate key"),
        (MINIMAL.replace("name: mini", "name: other"), 1, "differs from the file name"),
        (MINIMAL + "env: {TOKEN: yes}\n", 12, "booleans are ambiguous"),
    ],
)
def test_broken_file_names_file_line_and_field(tmp_path, text, line, needle):
    message = error_of(text, tmp_path)
    assert str(tmp_path / "mini.yaml") in message
    assert f"line {line}, " in message, message
    assert needle in message, message
    assert "Traceback" not in message


def test_yaml_syntax_error_has_line(tmp_path):
    message = error_of(MINIMAL.replace("hosts:\n", "hosts: [\n"), tmp_path)
    assert "mini.yaml:" in message and "not valid YAML" in message


def test_not_a_mapping(tmp_path):
    assert "must be a YAML mapping" in error_of("- just\n- a list\n", tmp_path)


def test_several_problems_reported_at_once(tmp_path):
    text = MINIMAL.replace("tp: 1}\ndecode", "tp: x}\ndecode").replace("port: 8000", "port: nope")
    message = error_of(text, tmp_path)
    assert "(2 problems)" in message and "prefill[0].tp" in message and "router.port" in message


def test_unknown_cluster_lists_known_ones(tmp_path):
    with pytest.raises(ClusterFileError, match="Known clusters in .*h20-pp2"):
        load_cluster("h20-pp3", CLUSTERS)


def test_the_shipped_clusters_are_found_by_name_from_any_folder(tmp_path):
    """A name the cluster folder lacks is looked up among the clusters shipped in the package (the
    repository's clusters/); the folder's own file of that name wins."""
    spec = load_cluster("sim-pp2", tmp_path / "clusters")
    assert spec.name == "sim-pp2" and Path(spec.model_path).is_dir()
    with pytest.raises(ClusterFileError, match="shipped with pytest-pd: .*sim-pp2, sim-tp8"):
        load_cluster("sim-pp3", tmp_path)
    (tmp_path / "sim-pp2.yaml").write_text(MINIMAL.replace("name: mini", "name: sim-pp2"), encoding="utf-8")
    assert load_cluster("sim-pp2", tmp_path).source == (tmp_path / "sim-pp2.yaml").resolve()


def test_numbers_in_env_are_strings(tmp_path):
    spec = parse(MINIMAL + "env: {NCCL_IB_TIMEOUT: 22}\n", tmp_path)
    assert spec.env == {"NCCL_IB_TIMEOUT": "22"}


def test_server_defaults_fill_unset_fields_and_extra_args_append(tmp_path):
    text = MINIMAL + textwrap.dedent("""\
        server_defaults:
          page_size: 64
          extra_args: [--log-level, debug]
          tp: 2
        """)
    spec = parse(text, tmp_path)
    prefill = spec.servers("prefill")[0]
    assert prefill.page_size == 64 and prefill.tp == 1  # the server's own tp wins
    decode = spec.servers("decode")[0]
    assert decode.extra_args == ["--log-level", "debug"]


def test_xpyd_and_multinode_render(tmp_path):
    text = textwrap.dedent("""\
        name: mini
        launcher: ssh
        model: {path: /m}
        hosts:
          p0: {address: 10.0.0.1}
          p1: {address: 10.0.0.2}
          d0: {address: 10.0.0.3}
          d1: {address: 10.0.0.4}
        prefill:
          - {host: p0, port: 30000, bootstrap_port: 8998, tp: 8}
          - {host: p1, port: 30000, bootstrap_port: 8998, tp: 8}
        decode:
          - {hosts: [d0, d1], port: 30001, tp: 16, dist_init_addr: "10.0.0.3:5000"}
        """)
    spec = parse(text, tmp_path)
    plan = {c.name: c for c in launch_plan(spec)}
    assert set(plan) == {"prefill-0", "prefill-1", "decode-0", "decode-0-rank1", "router"}
    rank1 = plan["decode-0-rank1"]
    assert rank1.host == "d1" and rank1.health_url is None
    assert ["--nnodes", "2"] == list(rank1.argv[rank1.argv.index("--nnodes") :][:2])
    assert "--node-rank" in rank1.argv and rank1.argv[rank1.argv.index("--node-rank") + 1] == "1"
    router = " ".join(plan["router"].argv)
    assert (
        "--prefill http://10.0.0.1:30000 8998 --prefill http://10.0.0.2:30000 8998 "
        "--decode http://10.0.0.3:30001"
    ) in router


def test_multinode_needs_dist_init_addr(tmp_path):
    text = MINIMAL.replace("{host: a, port: 30001, tp: 1}", "{hosts: [a, a], port: 30001, tp: 2}")
    assert "needs `dist_init_addr" in error_of(text, tmp_path)


def test_hostile_values_are_quoted_not_executed(tmp_path):
    text = MINIMAL.replace("tp: 1}\ndecode", "tp: 1, extra_args: ['--x', '$(touch pwned); rm']}\ndecode")
    spec = parse(text, tmp_path)
    script = render_commands(spec)
    out = subprocess.run(["bash", "-n", "-c", script], capture_output=True, text=True)
    assert out.returncode == 0
    assert "'$(touch pwned); rm'" in script


def test_cli_reports_error_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(MINIMAL.replace("name: mini\n", "").replace("tp: 1}\ndecode", "tp: [1]}\ndecode"))
    out = subprocess.run(
        [sys.executable, "-m", "pytest_pd.cli", "commands", str(bad)], capture_output=True, text=True
    )
    assert out.returncode == 2
    assert "bad.yaml" in out.stderr and "line 7, prefill[0].tp" in out.stderr
    assert "Traceback" not in out.stderr


def test_engine_option_blocks_merge_and_are_written_back_under_their_key(tmp_path: Path):
    import yaml

    from pytest_pd.cluster import engines

    spec = load_cluster("sim-pp2", REPO / "clusters")
    top = spec.engine_options["sim"]
    assert top["speedup"] == 10
    # a server's own block wins over server_defaults', which wins over the top's
    raw = yaml.safe_load((REPO / "clusters" / "sim-pp2.yaml").read_text())
    raw["server_defaults"]["sim"] = {"speedup": 5, "decode_memory_efficiency": 0.5}
    raw["decode"][0]["sim"] = {"speedup": 7}
    raw.pop("baseline")
    (tmp_path / "sim-pp2.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    spec = load_cluster("sim-pp2", tmp_path)
    decode = spec.servers("decode")[0]
    assert engines.options(spec, decode) == {**top, "speedup": 7, "decode_memory_efficiency": 0.5}
    assert engines.options(spec, spec.servers("prefill")[0])["speedup"] == 5
    # what `pytest-pd attach` and the run state write back reads as the file did
    dumped = spec.model_dump(mode="json", exclude_unset=True)
    assert "engine_options" not in dumped and dumped["sim"] == top
    assert dumped["decode"][0]["sim"] == {"speedup": 7}
    assert dumped["server_defaults"]["sim"]["decode_memory_efficiency"] == 0.5
    (tmp_path / "again.yaml").write_text(yaml.safe_dump({**dumped, "name": "again"}, sort_keys=False))
    assert load_cluster("again", tmp_path).model_dump() == {**spec.model_dump(), "name": "again"}
