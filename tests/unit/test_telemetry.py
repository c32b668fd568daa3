"""Telemetry: Prometheus text and nvidia-smi CSV parsing, and the background sampler against a
real HTTP endpoint on loopback (and a fake GPU host)."""

from __future__ import annotations

import http.server
import threading
import time

import pytest

from pytest_pd.prometheus import parse_prometheus, server_summary
from pytest_pd.telemetry import Sampler, gpu_inventory, parse_gpu_inventory, parse_nvidia_smi

METRICS = """# HELP sglang:num_running_reqs Running requests.
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{model_name="m"} 3.0
# HELP sglang:generation_tokens_total Generation tokens processed.
# TYPE sglang:generation_tokens_total counter
sglang:generation_tokens_total{model_name="m"} %d
# HELP sglang:time_to_first_token_seconds Time to first token.
# TYPE sglang:time_to_first_token_seconds histogram
sglang:time_to_first_token_seconds_bucket{le="0.5",model_name="m"} 1.0
sglang:time_to_first_token_seconds_bucket{le="+Inf",model_name="m"} %d
sglang:time_to_first_token_seconds_count{model_name="m"} %d
sglang:time_to_first_token_seconds_sum{model_name="m"} %f
"""


def test_parse_prometheus_keeps_values_drops_buckets():
    values = parse_prometheus(METRICS % (10, 2, 2, 1.5))
    assert values == {
        "sglang:num_running_reqs": 3.0,
        "sglang:generation_tokens_total": 10.0,
        "sglang:time_to_first_token_seconds_count": 2.0,
        "sglang:time_to_first_token_seconds_sum": 1.5,
    }


def test_parse_gpu_inventory_counts_models_and_drivers():
    text = "NVIDIA H20, 580.95.05\n" * 7 + "NVIDIA H20, 570.86.15\n"
    assert parse_gpu_inventory(text) == "7× NVIDIA H20 (driver 580.95.05), 1× NVIDIA H20 (driver 570.86.15)"
    assert parse_gpu_inventory("") is None


def test_parse_nvidia_smi():
    out = parse_nvidia_smi("0, 97, 80000, 97871, 401.5\n1, 0, 10, 97871, [N/A]\ngarbage\n")
    assert out["0"] == {
        "utilization_pct": 97.0,
        "memory_used_mib": 80000.0,
        "memory_total_mib": 97871.0,
        "power_w": 401.5,
    }
    assert out["1"]["power_w"] is None and len(out) == 2


@pytest.fixture
def metrics_server():
    state = {"n": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            state["n"] += 1
            n = state["n"]
            body = (METRICS % (10 * n, n, n, 0.5 * n)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    server.shutdown()
    server.server_close()


def test_sampler_scrapes_in_background_and_reports_gpu_availability(metrics_server):
    def gpu_host(argv):
        if argv[0] == "sh":
            return 0, "/usr/bin/nvidia-smi\n"
        if argv[1] == "--query-gpu=name,driver_version":
            return 0, "NVIDIA H20, 580.95.05\nNVIDIA H20, 580.95.05\n"
        return 0, "0, 50, 1000, 2000, 100.0\n"

    sampler = Sampler(
        {"decode-0": metrics_server, "dead": "http://127.0.0.1:9/metrics"},
        {
            "gpu-node": gpu_host,
            "cpu-node": lambda argv: (1, ""),
            "sim-node": "simulated host: no GPU to sample",
        },
        interval_s=0.05,
        timeout_s=0.5,
    ).start()
    time.sleep(0.3)
    data = sampler.stop()
    samples = data["server"]["decode-0"]["samples"]
    assert len(samples) >= 3 and samples[0]["t"] <= samples[-1]["t"]
    assert data["server"]["dead"]["errors"] >= 1 and not data["server"]["dead"]["samples"]
    assert (
        data["gpu"]["gpu-node"]["available"]
        and data["gpu"]["gpu-node"]["samples"][0]["gpus"]["0"]["utilization_pct"] == 50.0
    )
    assert gpu_inventory(data) == {"gpu-node": "2× NVIDIA H20 (driver 580.95.05)"}
    assert data["gpu"]["cpu-node"] == {
        "available": False,
        "reason": "nvidia-smi not found on this host",
        "samples": [],
    }
    assert data["gpu"]["sim-node"]["reason"].startswith("simulated host")
    summary = server_summary(data["server"])["decode-0"]
    n = len(samples)
    assert summary["sglang:generation_tokens_total"] == 10.0 * (n - 1)  # change over the run
    assert summary["sglang:time_to_first_token_seconds_mean"] == pytest.approx(0.5)
    assert summary["sglang:num_running_reqs"] == 3.0


# An excerpt of smg 1.13.0's /metrics (sglang-router 0.3.2 uses the same names).
ROUTER_METRICS = """# HELP smg_router_requests_total Total routed requests
# TYPE smg_router_requests_total counter
smg_router_requests_total{router_type="http",backend_type="pd",connection_mode="http",model="m",endpoint="generate",streaming="true"} %d
# HELP smg_worker_health Worker health status (1=healthy, 0=unhealthy)
# TYPE smg_worker_health gauge
smg_worker_health{worker="http://127.0.0.1:31000"} 1
smg_worker_health{worker="http://127.0.0.1:31001"} 0
# HELP smg_worker_cb_state Circuit breaker state per worker (0=closed, 1=open, 2=half_open)
# TYPE smg_worker_cb_state gauge
smg_worker_cb_state{worker="http://127.0.0.1:31001"} 1
# HELP smg_tokio_alive_tasks Tasks alive (spawned, not yet completed)
# TYPE smg_tokio_alive_tasks gauge
smg_tokio_alive_tasks 28
# HELP smg_pd_ttft_seconds PD time to first token
# TYPE smg_pd_ttft_seconds histogram
smg_pd_ttft_seconds_bucket{backend_type="pd",le="+Inf"} 3
smg_pd_ttft_seconds_sum{backend_type="pd"} 0.013
smg_pd_ttft_seconds_count{backend_type="pd"} 3
"""


def test_parse_prometheus_keeps_only_the_router_kinds_families():
    from pytest_pd.cluster.routers import KINDS

    for name in ("sglang-router", "smg"):  # one router, two packages (vllm-router has its own)
        values = parse_prometheus(ROUTER_METRICS % 33, KINDS[name].metric_families)
        assert values == {
            "smg_router_requests_total{backend_type=pd,connection_mode=http,endpoint=generate,"
            "model=m,router_type=http,streaming=true}": 33.0,
            "smg_worker_health{worker=http://127.0.0.1:31000}": 1.0,
            "smg_worker_health{worker=http://127.0.0.1:31001}": 0.0,
            "smg_worker_cb_state{worker=http://127.0.0.1:31001}": 1.0,
        }
    assert "smg_tokio_alive_tasks" in parse_prometheus(ROUTER_METRICS % 33)  # unfiltered: everything


def test_sampler_filters_a_targets_families(metrics_server):
    url = metrics_server
    sampler = Sampler(
        {"decode-0": url, "router": url},
        {},
        interval_s=0.05,
        families={"router": ["sglang:num_running_reqs"]},
    )
    sampler.start()
    data = sampler.stop()
    assert set(data["server"]["router"]["samples"][-1]["values"]) == {"sglang:num_running_reqs"}
    assert len(data["server"]["decode-0"]["samples"][-1]["values"]) > 1
