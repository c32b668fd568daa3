"""The simulated SGLang worker as real processes: unified mode directly, and a prefill + decode
pair behind the real sglang-router in PD mode. Loopback only; every process is killed (whole process
group) in a finally."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_pd.sim import closed_loop, model
from tests.helpers import Proc, free_port, get_json, request, start_pd
from tests.helpers import sim_argv as shared_sim_argv

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "clusters" / "models" / "sim-tiny"
HOST = "127.0.0.1"
PD_SPEEDUP = 10.0


def sim_argv(*args: str) -> list[str]:
    return shared_sim_argv(MODEL, *args)


def stream(url: str, body: dict[str, Any], timeout: float = 30.0) -> tuple[float, list[Any]]:
    """POST and read an SSE stream: (send time, [(arrival time, payload or '[DONE]'), ...])."""
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    t0 = time.monotonic()
    events: list[Any] = []
    with urllib.request.urlopen(req, timeout=timeout) as r:
        assert r.status == 200
        assert r.headers.get("Content-Type", "").startswith("text/event-stream")
        for line in r:
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            t = time.monotonic()
            events.append((t, "[DONE]" if payload == b"[DONE]" else json.loads(payload)))
    return t0, events


def wait_status(url: str, want: int = 200, timeout: float = 30.0, procs: list[Proc] | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        for p in procs or []:
            assert p.p.poll() is None, f"{p.name} exited early:\n{p.tail()}"
        try:
            last, _ = request("GET", url, timeout=2)
            if last == want:
                return
        except OSError as e:
            last = e
        time.sleep(0.1)
    logs = "\n".join(f"--- {p.name}\n{p.tail()}" for p in procs or [])
    raise AssertionError(f"{url} never answered {want} (last: {last})\n{logs}")


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Prefill (TP4 PP2) + decode (TP8, prefill_pp 2) simulators behind the real router."""
    logs = tmp_path_factory.mktemp("pd")
    # the seed's launch flags too: the simulator must accept SGLang's flags
    pd = start_pd(
        logs,
        speedup=PD_SPEEDUP,
        model=MODEL,
        prefill_args=(
            "--chunked-prefill-size",
            "16384",
            "--disaggregation-transfer-backend",
            "mooncake",
            "--disaggregation-ib-device",
            "mlx5_1,mlx5_2",
            "--trust-remote-code",
            "--page-size",
            "64",
            "--disable-overlap-schedule",
        ),
    )
    try:
        yield {
            "router": pd.router,
            "prefill": pd.prefill,
            "decode": pd.decode,
            "boot": pd.boot,
            "procs": pd.procs,
        }
    finally:
        pd.stop()


@pytest.fixture(scope="module")
def unified(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    logs = tmp_path_factory.mktemp("unified")
    port = free_port()
    p = Proc(
        "unified",
        sim_argv(
            "--port",
            str(port),
            "--tp-size",
            "8",
            "--context-length",
            "4096",
            "--sim-speedup",
            "50",
            "--sim-eos-after-tokens",
            "5",
            "--some-future-sglang-flag",
            "7",
            "--enable-metrics",
        ),
        logs,
    )
    try:
        wait_status(f"http://{HOST}:{port}/health", 200, timeout=20, procs=[p])
        yield f"http://{HOST}:{port}"
    finally:
        p.stop()
        assert "ignoring flags" in p.tail() and "--some-future-sglang-flag" in p.tail()


def ids(n: int, start: int = 10) -> list[int]:
    return [start + (i * 31) % 4000 for i in range(n)]


# ---------------------------------------------------------------------------------------------
# PD through the real router
# ---------------------------------------------------------------------------------------------


def test_pd_info_endpoints(pd: dict[str, Any]) -> None:
    pi = get_json(pd["prefill"] + "/get_server_info")
    di = get_json(pd["decode"] + "/server_info")
    assert pi["disaggregation_mode"] == "prefill" and di["disaggregation_mode"] == "decode"
    assert (pi["tp_size"], pi["pp_size"], pi["chunked_prefill_size"]) == (4, 2, 16384)
    assert pi["disaggregation_bootstrap_port"] == pd["boot"]
    assert (di["tp_size"], di["disaggregation_prefill_pp"]) == (8, 2)
    for info in (pi, di):
        assert info["simulated"] is True and info["version"] == "sim (pytest-pd)"
        assert info["sim"]["speedup"] == PD_SPEEDUP
        assert info["internal_states"] and isinstance(info["internal_states"][0], dict)
        assert Path(info["model_path"]).is_absolute() and Path(info["model_path"]).is_dir()
        assert info["host"] == HOST
    mi = get_json(pd["decode"] + "/get_model_info")
    assert mi["model_path"] == str(MODEL.resolve()) and mi["is_generation"] is True
    assert get_json(pd["prefill"] + "/model_info")["tokenizer_path"] == str(MODEL.resolve())
    models = get_json(pd["router"] + "/v1/models")
    assert [m["id"] for m in models["data"]] == ["sim-tiny"]


def test_pd_generate_stream_exact_and_after_prefill(pd: dict[str, Any]) -> None:
    n_in, n_out = 6000, 12
    t0, ev = stream(
        pd["router"] + "/generate",
        {
            "input_ids": ids(n_in),
            "stream": True,
            "sampling_params": {"max_new_tokens": n_out, "ignore_eos": True, "temperature": 0},
        },
    )
    assert ev[-1][1] == "[DONE]" and all(e != "[DONE]" for _, e in ev[:-1])
    chunks = [e for _, e in ev[:-1]]
    last = chunks[-1]
    assert last["meta_info"]["completion_tokens"] == n_out
    assert last["meta_info"]["prompt_tokens"] == n_in
    assert last["meta_info"]["finish_reason"] == {"type": "length", "length": n_out}
    assert len(last["output_ids"]) == n_out
    # cumulative text: each chunk extends the previous one
    texts = [c["text"] for c in chunks]
    assert all(b.startswith(a) for a, b in zip(texts[:-1], texts[1:], strict=True))
    counts = [c["meta_info"]["completion_tokens"] for c in chunks]
    assert counts == sorted(counts) and counts[0] >= 1

    # the decode stream starts only after the simulated prefill compute + KV transfer
    params = model.SimParams(speedup=PD_SPEEDUP)
    compute = model.prefill_chunk_time(params, n_in, tp=4, pp=2) / PD_SPEEDUP
    transfer = model.kv_transfer_time(params, n_in, prefill_pp=2) / PD_SPEEDUP
    ttft = ev[0][0] - t0
    assert ttft >= 0.9 * (compute + transfer), (ttft, compute, transfer)
    assert ttft <= compute + transfer + 0.5, (ttft, compute, transfer)

    # ground truth: prefill finished before decode's first token, both after arrival
    dec = get_json(pd["decode"] + "/sim/trace")["requests"][-1]
    pre = [r for r in get_json(pd["prefill"] + "/sim/trace")["requests"] if r["room"] == dec["room"]]
    assert len(pre) == 1 and pre[0]["prefill_done"] is not None
    assert pre[0]["prefill_done"] - pre[0]["arrival"] >= 0.9 * compute
    assert dec["token_times"][0] >= pre[0]["prefill_done"]
    assert len(dec["token_times"]) == n_out and dec["completion_tokens"] == n_out
    assert t0 <= dec["arrival"] <= dec["token_times"][0] <= ev[0][0]


def test_pd_generate_non_stream(pd: dict[str, Any]) -> None:
    status, data = request(
        "POST",
        pd["router"] + "/generate",
        {
            "text": "the quick brown fox jumps over the lazy dog",
            "sampling_params": {"max_new_tokens": 9, "ignore_eos": True},
        },
    )
    assert status == 200, data
    out = json.loads(data)
    assert out["meta_info"]["completion_tokens"] == 9 and len(out["output_ids"]) == 9
    assert out["meta_info"]["prompt_tokens"] > 0
    assert out["meta_info"]["finish_reason"]["type"] == "length"
    assert out["meta_info"]["cached_tokens"] == 0 and out["text"]


def test_pd_completions_stream_and_non_stream(pd: dict[str, Any]) -> None:
    # sglang-router 0.3.2 only accepts a string (or list of strings) prompt and needs "model"
    prompt = " the cat" * 250
    t0, ev = stream(
        pd["router"] + "/v1/completions",
        {
            "model": "sim-tiny",
            "prompt": prompt,
            "max_tokens": 7,
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    assert ev[-1][1] == "[DONE]"
    chunks = [e for _, e in ev[:-1]]
    usage = [c["usage"] for c in chunks if c.get("usage")]
    assert usage and usage[-1]["completion_tokens"] == 7 and usage[-1]["prompt_tokens"] == 500
    assert usage[-1]["total_tokens"] == 507  # " the" and " cat" are one token each
    text = "".join(c["choices"][0]["text"] for c in chunks if c["choices"])
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes[-1] == "length" and all(f is None for f in finishes[:-1])
    assert text.strip()

    status, data = request(
        "POST",
        pd["router"] + "/v1/completions",
        {"model": "sim-tiny", "prompt": "hello there", "max_tokens": 5, "ignore_eos": True},
    )
    assert status == 200, data
    out = json.loads(data)
    assert out["usage"]["completion_tokens"] == 5 and out["choices"][0]["text"]
    assert out["choices"][0]["finish_reason"] == "length"


def test_pd_concurrent_streams_share_decode_steps(pd: dict[str, Any]) -> None:
    n, n_out = 8, 30
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            results[i] = stream(
                pd["router"] + "/generate",
                {
                    "input_ids": ids(800, start=i),
                    "stream": True,
                    "sampling_params": {"max_new_tokens": n_out, "ignore_eos": True},
                },
            )
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    for _, ev in results:
        assert ev[-1][1] == "[DONE]"
        assert ev[-2][1]["meta_info"]["completion_tokens"] == n_out
    trace = get_json(pd["decode"] + "/sim/trace")["requests"][-n:]
    # one decode loop: tokens of concurrent requests are emitted at the same step times
    step_times = [t for r in trace for t in r["token_times"][1:]]
    assert len(set(step_times)) < 0.5 * len(step_times)


def test_pd_matches_discrete_event_model(pd: dict[str, Any]) -> None:
    """A small closed loop through the router agrees with simulate_closed_loop."""
    conc, num, n_in, n_out = 4, 4, 6000, 40
    ttfts: list[float] = []
    lats: list[float] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        t0, ev = stream(
            pd["router"] + "/generate",
            {
                "input_ids": ids(n_in, start=100 + i),
                "stream": True,
                "sampling_params": {"max_new_tokens": n_out, "ignore_eos": True},
            },
        )
        with lock:
            ttfts.append(ev[0][0] - t0)
            lats.append(ev[-1][0] - t0)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(num)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(ttfts) == num
    want = closed_loop.simulate_closed_loop(
        model.SimParams(speedup=PD_SPEEDUP),
        model.ServerShape(tp=4, pp=2, chunked_prefill_size=16384),
        model.ServerShape(tp=8, prefill_pp=2),
        n_in,
        n_out,
        conc,
        num,
    )
    mean_ttft, mean_lat = sum(ttfts) / num, sum(lats) / num
    assert mean_ttft == pytest.approx(want["mean_ttft_s"], rel=0.2, abs=0.03)
    assert mean_lat == pytest.approx(want["mean_e2e_latency_s"], rel=0.2, abs=0.03)


# ---------------------------------------------------------------------------------------------
# Unified (non-PD) server, directly
# ---------------------------------------------------------------------------------------------


def test_unified_generate_and_completions(unified: str) -> None:
    status, data = request(
        "POST",
        unified + "/generate",
        {"input_ids": ids(100), "sampling_params": {"max_new_tokens": 20, "ignore_eos": True}},
    )
    assert status == 200
    out = json.loads(data)
    assert out["meta_info"]["completion_tokens"] == 20 and out["meta_info"]["prompt_tokens"] == 100
    _, ev = stream(
        unified + "/v1/completions",
        {
            "prompt": ids(50),
            "max_tokens": 12,
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    assert ev[-1][1] == "[DONE]"
    assert ev[-2][1]["choices"] == [] and ev[-2][1]["usage"]["completion_tokens"] == 12
    assert ev[-2][1]["usage"]["prompt_tokens"] == 50
    assert sum(1 for _, e in ev[:-2] if e["choices"][0]["text"]) >= 1
    info = get_json(unified + "/get_server_info")
    assert info["disaggregation_mode"] == "null" and info["context_length"] == 4096
    trace = get_json(unified + "/sim/trace")["requests"]
    assert trace[-1]["prefill_done"] >= trace[-1]["arrival"]
    metrics = request("GET", unified + "/metrics")[1].decode()
    assert "sglang:num_running_reqs" in metrics


def test_unified_eos_after_tokens(unified: str) -> None:
    _, ev = stream(
        unified + "/generate",
        {"input_ids": ids(30), "stream": True, "sampling_params": {"max_new_tokens": 50}},
    )
    last = ev[-2][1]
    assert last["meta_info"]["completion_tokens"] == 5
    assert last["meta_info"]["finish_reason"]["type"] == "stop"
    status, data = request("POST", unified + "/v1/completions", {"prompt": ids(30), "max_tokens": 50})
    out = json.loads(data)
    assert out["usage"]["completion_tokens"] == 5 and out["choices"][0]["finish_reason"] == "stop"
    status, data = request(
        "POST", unified + "/v1/completions", {"prompt": ids(30), "max_tokens": 50, "ignore_eos": True}
    )
    assert json.loads(data)["usage"]["completion_tokens"] == 50


def test_unified_text_prompt_counted_with_tokenizer(unified: str) -> None:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(MODEL / "tokenizer.json"))
    text = "def fibonacci(n):\n    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)\n"
    status, data = request(
        "POST",
        unified + "/generate",
        {"text": text, "sampling_params": {"max_new_tokens": 3, "ignore_eos": True}},
    )
    out = json.loads(data)
    assert out["meta_info"]["prompt_tokens"] == len(tok.encode(text, add_special_tokens=False).ids)
    # the output text re-tokenizes to exactly the reported ids
    assert tok.encode(out["text"], add_special_tokens=False).ids == out["output_ids"]


def test_unified_errors(unified: str) -> None:
    status, data = request("POST", unified + "/generate", raw=b"{not json")
    assert status == 400 and "message" in json.loads(data)["error"]
    status, data = request("POST", unified + "/generate", {"sampling_params": {}})
    assert status == 400
    status, data = request("POST", unified + "/generate", {"input_ids": ["a", "b"]})
    assert status == 400
    status, data = request("POST", unified + "/v1/completions", {"prompt": ids(5000), "max_tokens": 4})
    assert status == 400 and "context length" in json.loads(data)["error"]["message"]


def test_startup_delay_and_sigterm(tmp_path: Path) -> None:
    port = free_port()
    p = Proc("delayed", sim_argv("--port", str(port), "--sim-startup-delay-s", "1.0"), tmp_path)
    try:
        wait_status(f"http://{HOST}:{port}/health", 503, timeout=15, procs=[p])
        t503 = time.monotonic()
        wait_status(f"http://{HOST}:{port}/health_generate", 200, timeout=5, procs=[p])
        assert time.monotonic() - t503 <= 1.5
        t = time.monotonic()
        os.killpg(p.p.pid, signal.SIGTERM)
        assert p.p.wait(5) == 0
        assert time.monotonic() - t < 1.5
        assert "role=null" in p.tail() and "speedup=1" in p.tail()
    finally:
        p.stop()


def test_2p1d_round_robin_matches_discrete_event_model(tmp_path: Path) -> None:
    """Two prefill servers and one decode behind the real router with round-robin routing: the
    client's means agree with the discrete-event simulation of the same topology."""
    from pytest_pd.workload import Workload, build_prompts, load_tokenizer, run_workload_sync, summarize

    pd = start_pd(
        tmp_path,
        speedup=PD_SPEEDUP,
        model=MODEL,
        prefill_args=("--chunked-prefill-size", "16384"),
        router_args=("--policy", "round_robin"),
        prefills=2,
    )
    try:
        w = Workload(input_len=6000, output_len=40, concurrency=8, num_requests=16, warmup_requests=0)
        result = run_workload_sync(pd.router, w, build_prompts(load_tokenizer(MODEL), w))
    finally:
        pd.stop()
    got = summarize(result)
    assert got.completed == 16
    pre = model.ServerShape(tp=4, pp=2, chunked_prefill_size=16384)
    want = closed_loop.simulate(
        model.SimParams(speedup=PD_SPEEDUP),
        closed_loop.Topology((pre, pre), (model.ServerShape(tp=8, prefill_pp=2),)),
        [6000] * 16,
        [40] * 16,
        concurrency=8,
    )
    assert got.mean_ttft_ms / 1000 == pytest.approx(want["mean_ttft_s"], rel=0.2, abs=0.03)
    assert got.mean_e2e_latency_ms / 1000 == pytest.approx(want["mean_e2e_latency_s"], rel=0.2, abs=0.03)
    one_prefill = closed_loop.simulate(
        model.SimParams(speedup=PD_SPEEDUP),
        closed_loop.Topology((pre,), (model.ServerShape(tp=8, prefill_pp=2),)),
        [6000] * 16,
        [40] * 16,
        concurrency=8,
    )
    # the second prefill shows: the measurement is nearer the 2P1D prediction than the 1P1D one
    measured = got.mean_ttft_ms / 1000
    assert abs(measured - want["mean_ttft_s"]) < abs(measured - one_prefill["mean_ttft_s"])
