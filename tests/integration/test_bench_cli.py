"""`pytest-pd bench` end to end: the real CLI process against simulated PD workers behind the real
sglang-router (loopback only), its printed result, its JSON and its exit status."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_workload_sim import SIM_TINY

from pytest_pd.workload import RunSummary, Workload
from tests.helpers import free_port, start_pd

PY = sys.executable
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pd = start_pd(tmp_path_factory.mktemp("bench-pd"), speedup=200.0)
    try:
        yield pd.router
    finally:
        pd.stop()


def bench(*args: str, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "pytest_pd.cli", "bench", *args], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


def port_of(url: str) -> str:
    return url.rsplit(":", 1)[1]


def test_bench_generate_repeats_slo_json(router: str, tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    p = bench(
        "--model",
        "sim-tiny",
        "--tokenizer-path",
        str(SIM_TINY),
        "--ip",
        "127.0.0.1",
        "--port",
        port_of(router),
        "--parallel",
        "4",
        "--number",
        "8",
        "--input-length",
        "800",
        "--output-length",
        "16",
        "--repeats",
        "2",
        "--request-rate",
        "40",
        "--seed",
        "3",
        "--slo",
        "ttft_ms=60000",
        "tpot_ms=5000",
        "--output-json",
        str(out),
        "--no-progress",
        "--label",
        "sim-pd",
    )
    assert p.returncode == 0, p.stdout + p.stderr
    text = p.stdout
    assert "TTFT (s):" in text and "throughput (tok/s):" in text and "TPOT (ms):" in text
    assert "| config | TTFT (s) | throughput (tok/s) | TPOT (ms) | mean latency (s) |" in text
    assert "sim-pd (repeat 1)" in text and "sim-pd (median of 2)" in text
    assert "Serving Benchmark Result" in text and "Goodput (req/s):" in text
    data = json.loads(out.read_text())
    w = Workload.from_dict(data["workload"])
    assert (w.input_len, w.output_len, w.concurrency, w.num_requests) == (800, 16, 4, 8)
    assert w.request_rate == 40 and data["workload"]["id"] == w.id
    m = RunSummary.from_dict(data["metrics"])
    assert m.completed == 8 and m.failed == 0 and m.repeats == 2
    assert m.total_input_tokens == 8 * 800 and m.total_output_tokens == 8 * 16
    assert m.input_len_mismatches == 0 and m.output_len_mismatches == 0
    assert m.goodput_ratio == 1.0 and m.goodput > 0 and m.slo == {"ttft_ms": 60000.0, "tpot_ms": 5000.0}
    assert m.mean_ttft_ms > 0 and not math.isnan(m.p90_itl_ms) and m.peak_output_throughput > 0
    assert len(data["repeats"]) == 2
    assert data["started_at"] <= data["finished_at"] and data["problems"] == []
    assert data["cluster"]["name"] == "sim-pd" and data["model"]["name"] == "sim-tiny"


def test_bench_completions_text_with_progress_bar(router: str, tmp_path: Path) -> None:
    p = bench(
        "--tokenizer-path",
        str(SIM_TINY),
        "--port",
        port_of(router),
        "--api",
        "completions",
        "--parallel",
        "4",
        "--number",
        "6",
        "--input-length",
        "1200",
        "--output-length",
        "12",
        "--prefix-groups",
        "2",
        "--prefix-len",
        "600",
        "--results-dir",
        str(tmp_path),
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert "tok/s" in p.stderr and "errors" in p.stderr and "6/6" in p.stderr  # tqdm bar
    files = list(tmp_path.glob("*.json"))
    assert len(files) == 1 and "in1200-out12-c4-n6-px2x600-completions" in files[0].name
    m = json.loads(files[0].read_text())["metrics"]
    assert m["completed"] == 6 and m["input_len_mismatches"] == 0
    assert m["total_input_tokens"] == 6 * 1200  # the server counted the text exactly


def test_bench_failed_requests_exit_1(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    p = bench(
        "--tokenizer-path",
        str(SIM_TINY),
        "--port",
        str(free_port()),
        "--number",
        "3",
        "--parallel",
        "2",
        "--input-length",
        "10",
        "--output-length",
        "4",
        "--warmup-requests",
        "0",
        "--output-json",
        str(out),
        "--no-progress",
    )
    assert p.returncode == 1, p.stdout + p.stderr
    assert "3 of 3 requests failed (connection: 3)" in p.stderr
    m = json.loads(out.read_text())["metrics"]
    assert m["errors_by_kind"] == {"connection": 3} and m["mean_ttft_ms"] is None


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--prefix-groups", "2"], "prefix_groups and prefix_len go together"),
        (["--parallel", "0"], "concurrency must be an integer >= 1"),
    ],
)
def test_bench_usage_errors_exit_2(args: list[str], needle: str, tmp_path: Path) -> None:
    p = bench(
        "--tokenizer-path", str(SIM_TINY), "--port", str(free_port()), "--results-dir", str(tmp_path), *args
    )
    assert p.returncode == 2 and needle in p.stderr, p.stderr
    p = bench("--tokenizer-path", str(tmp_path / "nope"), "--port", "1")
    assert p.returncode == 2 and "does not exist" in p.stderr
    p = bench("--tokenizer-path", str(SIM_TINY), "--slo", "latency=5")
    assert p.returncode == 2 and "NAME=MILLISECONDS" in p.stderr


def test_bench_replays_a_generated_trace(router: str, tmp_path: Path) -> None:
    """`pytest-pd trace` writes a trace; `bench --trace` replays it (lengths from the trace,
    arrivals at its timestamps, twice as fast)."""
    trace = tmp_path / "t.jsonl"
    made = subprocess.run(
        [
            PY,
            "-m",
            "pytest_pd.cli",
            "trace",
            "-o",
            str(trace),
            "--requests",
            "12",
            "--rate",
            "20",
            "--output-mean",
            "8",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert made.returncode == 0 and "12 requests over" in made.stdout, made.stdout + made.stderr
    rows = [json.loads(line) for line in trace.read_text().splitlines()]
    out = tmp_path / "result.json"
    p = bench(
        "--tokenizer-path", str(SIM_TINY), "--port", port_of(router), "--parallel", "12", "--number", "12",
        "--trace", str(trace), "--trace-time-scale", "2", "--output-json", str(out), "--no-progress",
    )  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr
    data = json.loads(out.read_text())
    assert data["workload"]["id"] == "trt-c12-n12-ts2"
    m = data["metrics"]
    assert m["completed"] == 12 and m["input_len_mismatches"] == 0 and m["output_len_mismatches"] == 0
    assert m["total_input_tokens"] == sum(r["input_length"] for r in rows)
    assert m["total_output_tokens"] == sum(r["output_length"] for r in rows)
    assert m["duration"] >= rows[-1]["timestamp"] / 1000 / 2  # the last one was sent on time, not at once
