"""The simulator as a faithful peer: every path behind the real router, server-side truth,
Prometheus metrics, and faults on demand."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pytest_pd.cluster.spec_file import load_cluster
from pytest_pd.cluster.topology import Topology
from pytest_pd.workload.prompts import build_prompts
from pytest_pd.workload.run_sync import run_workload_sync
from pytest_pd.workload.spec import Workload
from pytest_pd.workload.tokenizer import load_tokenizer
from tests.helpers import SIM_MODEL, free_ports, get_json, request, sim_cluster_copy


def sse_events(raw: bytes) -> list[str]:
    return [line[len("data: ") :] for line in raw.decode().split("\n\n") if line.startswith("data: ")]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """sim-pp2 behind the real router, metrics on, at the shipped speedup."""
    folder = tmp_path_factory.mktemp("clusters")
    sim_cluster_copy("sim-pp2", folder, baseline=None)
    spec = load_cluster("sim-pp2", folder)
    with Topology(spec, folder / "runs", say=lambda _: None) as topo:
        yield topo


def worker_url(topo: Topology, role: str) -> str:
    cmd = next(c for c in topo.plan if c.name == f"{role}-0")
    return cmd.health_url.rsplit("/", 1)[0]


def ttft_lags_ms(url: str, seed: int) -> np.ndarray:
    """Client first-token time minus the moment the worker handed that token's chunk to its
    socket, per request (ms): the client's own measurement error."""
    workload = Workload(input_len=2000, output_len=16, concurrency=16, num_requests=48, seed=seed)
    prompts = build_prompts(load_tokenizer(SIM_MODEL), workload)
    result = run_workload_sync(url, workload, prompts)
    assert all(r.error_kind is None for r in result.records)
    trace = get_json(url + "/sim/trace")["requests"]
    emitted = {tuple(t["prompt_head"]): t["first_sent"] for t in trace if t["prompt_head"]}
    return (
        np.array([r.t_first_token - emitted[tuple(prompts[r.index].token_ids[:8])] for r in result.records])
        * 1000.0
    )


STAMP_P99_BOUND_MS = 10.0


def test_client_ttft_matches_server_emit_time(sim_proc):
    """Client TTFT close to the server's emit time at concurrency 16 (the worker serves the client
    directly: the router's own latency is not the client's error): never before it, and p99
    within 10 ms (5 ms flaked while CI shared the cores with other work). That bound catches a
    client that stamps late (a blocked loop costs tens of ms); the precise figure (p50 ~0.1-0.7 ms, p99 ~0.6-2 ms on two shared cores) is what
    benchmarks/accuracy.py prints, since a timing bound this tight flakes on a shared machine. A
    run disturbed by other work may be repeated (3 at most)."""
    proc, url = sim_proc("--sim-speedup", "10")
    assert wait_health(url, proc) == 200
    runs = []
    for seed in range(3):
        lags = ttft_lags_ms(url, seed)
        assert len(lags) == 48
        assert lags.min() >= 0.0, "the client saw a token before the server sent it: clocks differ"
        runs.append(lags)
        if np.percentile(lags, 99) <= STAMP_P99_BOUND_MS:
            return
    summary = [f"p50 {np.median(x):.2f} ms, p99 {np.percentile(x, 99):.2f} ms" for x in runs]
    pytest.fail(f"client TTFT lags the server's emit time: {summary}")


def test_logprobs_merge_through_router(cluster):
    ids = list(range(100, 140))
    status, raw = request(
        "POST",
        cluster.router_url + "/generate",
        {
            "input_ids": ids,
            "return_logprob": True,
            "sampling_params": {"max_new_tokens": 5, "ignore_eos": True},
        },
    )
    assert status == 200, raw
    meta = json.loads(raw)["meta_info"]
    assert [e[1] for e in meta["input_token_logprobs"]] == ids  # from the prefill worker
    assert meta["input_token_logprobs"][0][0] is None
    assert len(meta["output_token_logprobs"]) == 5 and meta["completion_tokens"] == 5


@pytest.mark.parametrize("stream", [False, True])
def test_chat_completions_through_router(cluster, stream):
    body = {
        "model": "sim-tiny",
        "messages": [{"role": "user", "content": "hello there"}],
        "max_tokens": 6,
        "ignore_eos": True,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    status, raw = request("POST", cluster.router_url + "/v1/chat/completions", body)
    assert status == 200, raw
    if not stream:
        body = json.loads(raw)
        assert body["object"] == "chat.completion"
        assert body["choices"][0]["message"]["role"] == "assistant"
        assert body["usage"]["completion_tokens"] == 6
        return
    events = sse_events(raw)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text.strip()
    assert chunks[-1]["usage"]["completion_tokens"] == 6


def test_server_info_and_metrics(cluster):
    info = get_json(worker_url(cluster, "decode") + "/get_server_info")
    assert info["disaggregation_mode"] == "decode" and info["disaggregation_prefill_pp"] == 2
    assert info["simulated"] is True
    request(
        "POST",
        cluster.router_url + "/generate",
        {"input_ids": list(range(10, 600)), "sampling_params": {"max_new_tokens": 8, "ignore_eos": True}},
    )
    with urllib.request.urlopen(worker_url(cluster, "decode") + "/metrics", timeout=10) as resp:
        families = {f.name: f for f in text_string_to_metric_families(resp.read().decode())}
    for name in (
        "sglang:num_running_reqs",
        "sglang:num_queue_reqs",
        "sglang:gen_throughput",
        "sglang:time_to_first_token_seconds",
        "sglang:inter_token_latency_seconds",
        "sglang:e2e_request_latency_seconds",
        "sglang:kv_transfer_latency_ms",
        "sglang:generation_tokens",
        "sglang:prompt_tokens",
    ):
        assert name in families, sorted(families)
    ttft_count = next(
        s.value for s in families["sglang:time_to_first_token_seconds"].samples if s.name.endswith("_count")
    )
    assert ttft_count >= 1
    kv = families["sglang:kv_transfer_latency_ms"].samples[0].value
    assert kv > 0  # model milliseconds of the last transfer


# ------------------------------------------------------------------------------- faults


def start_sim(*args: str) -> tuple[subprocess.Popen, str]:
    (port,) = free_ports(1)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest_pd.sim",
            "--model-path",
            str(SIM_MODEL),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--sim-speedup",
            "50",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    return proc, url


def wait_health(url: str, proc: subprocess.Popen, want: int = 200, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as resp:
                status = resp.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except OSError:
            status = None
        if status == want:
            return status
        time.sleep(0.05)
    return status


@pytest.fixture
def sim_proc():
    procs: list[subprocess.Popen] = []

    def start(*args: str) -> tuple[subprocess.Popen, str]:
        proc, url = start_sim(*args)
        procs.append(proc)
        return proc, url

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)


GEN = {"input_ids": list(range(50, 150)), "sampling_params": {"max_new_tokens": 20, "ignore_eos": True}}


def test_fault_error_on_a_share_after_n_requests(sim_proc):
    proc, url = sim_proc(
        "--sim-fault",
        "error",
        "--sim-fault-status",
        "503",
        "--sim-fault-after-requests",
        "2",
        "--sim-fault-share",
        "0.5",
    )
    assert wait_health(url, proc) == 200
    statuses = [request("POST", url + "/generate", GEN)[0] for _ in range(8)]
    assert statuses == [200, 200, 200, 503, 200, 503, 200, 503]


def test_fault_drop_cuts_the_stream_without_done(sim_proc):
    proc, url = sim_proc("--sim-fault", "drop", "--sim-fault-drop-after-tokens", "5")
    assert wait_health(url, proc) == 200
    req = urllib.request.Request(
        url + "/generate", json.dumps({**GEN, "stream": True}).encode(), {"Content-Type": "application/json"}
    )
    body = b""
    with pytest.raises((urllib.error.URLError, OSError, ValueError, http.client.HTTPException)):
        with urllib.request.urlopen(req, timeout=10) as resp:
            while chunk := resp.read(1):
                body += chunk
    counts = [json.loads(e)["meta_info"]["completion_tokens"] for e in sse_events(body)]
    assert b"[DONE]" not in body
    assert 5 <= counts[-1] < 20, counts


def test_fault_malformed_line_in_stream(sim_proc):
    proc, url = sim_proc("--sim-fault", "malformed", "--sim-fault-drop-after-tokens", "3")
    assert wait_health(url, proc) == 200
    status, raw = request("POST", url + "/generate", {**GEN, "stream": True})
    events = sse_events(raw)
    bad = [e for e in events if e != "[DONE]" and not e.endswith("}")]
    assert status == 200 and len(bad) == 1 and events[-1] == "[DONE]"


def test_fault_hang_never_answers(sim_proc):
    proc, url = sim_proc("--sim-fault", "hang")
    assert wait_health(url, proc) == 200
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        request("POST", url + "/generate", GEN, timeout=1.0)
    assert proc.poll() is None


def test_fault_crash_kills_the_process(sim_proc):
    proc, url = sim_proc("--sim-fault", "crash", "--sim-fault-after-requests", "1")
    assert wait_health(url, proc) == 200
    assert request("POST", url + "/generate", GEN)[0] == 200
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        request("POST", url + "/generate", GEN, timeout=5)
    assert proc.wait(5) == -signal.SIGKILL
    assert b"simulated fault: crash" in proc.stdout.read()


def test_fault_crash_at_start_and_never_healthy(sim_proc):
    proc, url = sim_proc("--sim-fault", "crash_at_start")
    assert proc.wait(10) == 3
    proc2, url2 = sim_proc("--sim-fault", "never_healthy")
    assert wait_health(url2, proc2, want=503) == 503
    time.sleep(0.3)
    assert wait_health(url2, proc2, want=200, timeout=0.5) == 503


def test_fault_slow_after_n_requests(sim_proc):
    proc, url = sim_proc(
        "--sim-fault",
        "slow",
        "--sim-fault-after-requests",
        "1",
        "--sim-fault-slowdown",
        "10",
        "--sim-speedup",
        "20",
    )
    assert wait_health(url, proc) == 200
    body = {"input_ids": list(range(50, 1050)), "sampling_params": {"max_new_tokens": 10, "ignore_eos": True}}
    t0 = time.perf_counter()
    request("POST", url + "/generate", body)
    fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    request("POST", url + "/generate", body)
    slow = time.perf_counter() - t0
    assert slow > 5 * fast, (fast, slow)


def test_unknown_fault_is_refused(tmp_path: Path):
    out = subprocess.run(
        [sys.executable, "-m", "pytest_pd.sim", "--model-path", str(SIM_MODEL), "--sim-fault", "explode"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode != 0 and "unknown fault 'explode'" in out.stderr
