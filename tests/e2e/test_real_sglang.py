"""The real-engine tier: real SGLang 0.5.23 on this machine's CPU (a tiny random-weight Llama),
prefill and decode PD-disaggregated with Mooncake moving the KV over TCP, behind the real
sglang-router. Set up once with `make real-sglang`; every test here is marked ``real_sglang``.

- the shipped suite on cpu-2p1d (started locally) against its baseline cpu-1p1d, measured live
  and brought up over SSH (real sshd on loopback: prefill + router on one host, decode on another,
  so the decode pulls the KV across): green, exact token counts from SGLang's usage, /metrics
  scraped, SGLang's whole process tree (``sglang::scheduler``, ``sglang::detokenizer``) gone
  afterwards on both, logs kept;
- a decode and a prefill killed mid-run: the test fails within 30 s naming the process, nothing is
  left running. (The router killed mid-run is the sim tier's ``router-dies-mid-run`` fault: the
  same sglang-router, and what the harness does does not depend on the engine behind it.)
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from pytest_pd.http_get import get_text
from pytest_pd.ttft_breakdown import MEASURED, RUN_MEAN
from pytest_pd.workload.trace import generate_trace, write_trace
from tests.helpers import (
    REPO,
    assert_nothing_left,
    real_cluster_copy,
    session_args,
)
from tests.helpers.midrun import kill_mid_run
from tests.helpers.sshd import SshFarm

pytestmark = pytest.mark.real_sglang

# A test that looks at the live cluster's process tree, run in the same session as the suite.
TREE_PROBE = """
import subprocess


def test_sglang_process_tree_is_real(pd_cluster):
    names = set()
    for item in pd_cluster.running:
        out = subprocess.run(["ps", "-o", "comm=", "-g", str(item.proc.pid)],
                             capture_output=True, text=True).stdout
        names |= {n.strip() for n in out.splitlines()}
    print("process names:", sorted(names))
    for wanted in ("sglang::scheduler", "sglang::detokenizer", "sglang::router"):
        assert any(wanted.startswith(n) for n in names if n.startswith("sglang::")), names
"""

# A generated trace (two shared system prompts, conversations that resend their history, 128-token
# blocks so that prompts fit the tiny model's context) replayed in the same session: real SGLang's
# prefill radix cache must find the shared prefixes, as its own /metrics count them.
TRACE_PROBE = """
import pytest
from pytest_pd.workload.spec import Workload

W = Workload(trace_path={trace!r}, num_requests=16, concurrency=16, trace_block_size=128)

@pytest.mark.pd_threshold("prefix_cache_hit_rate", min=0.2)
@pytest.mark.parametrize("pd_workload", [W], ids=lambda w: w.id)
def test_trace_replay_hits_the_prefix_cache(pd_run):
    m = pd_run.candidate.metrics
    assert m["completed"] == 16 and m["input_len_mismatches"] == 0 and m["output_len_mismatches"] == 0
"""

# Long enough to be running when a process is killed (~40 s on two cores), absolute bounds only.
FAULT_SUITE = """
import pytest
from pytest_pd.workload.spec import Workload

W = Workload(input_len=512, output_len=512, concurrency=4, num_requests=64, warmup_requests=1)

@pytest.mark.pd_threshold("mean_ttft_ms", max=600000)
@pytest.mark.parametrize("pd_workload", [W], ids=lambda w: w.id)
def test_workload(pd_run):
    pass
"""


def counter(metrics_url: str, name: str) -> float:
    """The counter ``name`` on a server's /metrics, summed over its labels (0 when unreachable)."""
    try:
        text = get_text(metrics_url, timeout=5)
    except OSError:
        return 0.0
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    )


def run(argv: list[str], cwd: Path, timeout: float = 900) -> tuple[int, str]:
    done = subprocess.run(
        argv,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def pytest_argv(folder: Path, out: Path, cluster: str, *tests: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pytest",
        *tests,
        *session_args(folder, out, cluster),
        "-s",
        "-p",
        "no:randomly",
    ]


def over_ssh(path: Path, sshd_farm: SshFarm, remote: Path, locks: Path) -> None:
    """Rewrite the cpu-1p1d file at ``path`` for ``launcher: ssh``: prefill and router on the
    farm's first host (127.0.0.2), decode on its second (127.0.0.3), each server announcing its
    own address for the KV bootstrap."""
    data = yaml.safe_load(path.read_text())
    python = data["hosts"]["cpu"]["python"]
    p, d = sshd_farm.hosts
    data["launcher"] = "ssh"
    data["hosts"] = {
        name: {**sshd_farm.host_block(h, remote, locks), "python": python}
        for name, h in (("prefill-node", p), ("decode-node", d))
    }
    data["prefill"][0].update(host="prefill-node", env={"SGLANG_HOST_IP": p.address})
    data["decode"][0].update(host="decode-node", env={"SGLANG_HOST_IP": d.address})
    data["router"].update(host="prefill-node", prometheus_host=p.address)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_shipped_suite_on_real_sglang_2p1d_local_and_1p1d_over_ssh(
    real_sglang: Path, sshd_farm: SshFarm, tmp_path: Path
):
    folder = tmp_path / "clusters"
    over_ssh(real_cluster_copy("cpu-1p1d", folder), sshd_farm, tmp_path / "remote", tmp_path / "locks")
    real_cluster_copy("cpu-2p1d", folder)
    probe = tmp_path / "test_tree.py"
    probe.write_text(TREE_PROBE)
    trace = tmp_path / "trace.jsonl"
    rows = generate_trace(
        16,
        rate=8.0,
        system_prompts=2,
        system_blocks=4,
        new_blocks=2,
        output_mean=16,
        max_blocks=12,
        block_size=128,
    )
    write_trace(trace, rows)
    trace_probe = tmp_path / "test_trace.py"
    trace_probe.write_text(TRACE_PROBE.format(trace=str(trace)))
    out = tmp_path / "out"

    # cpu-2p1d against cpu-1p1d measured live (the probes first: one bring-up of the candidate
    # serves them all). A stored baseline is the harness's business, not the engine's: the sim
    # tier covers it. The baseline over SSH: where the engine meets the launcher (two addresses,
    # the KV pulled across them).
    code, text = run(
        pytest_argv(
            folder,
            out,
            "cpu-2p1d",
            str(probe),
            str(trace_probe),
            str(REPO / "suites" / "test_pd_acceptance.py"),
        ),
        tmp_path,
    )
    assert code == 0, text
    assert re.search(r"4 passed, 2 skipped", text), text  # the seed (sim, h20) and vLLM tests skip
    assert "pass: prefix_cache_hit_rate" in text and "prefix cache not flushed" not in text, text
    assert "process names:" in text and "sglang::schedul" in text, text
    assert re.search(r"cpu-2p1d \(candidate\)\s+TP=1 \(2P1D\)", text), text
    assert re.search(r"cpu-1p1d \(baseline\)\s+TP=1\s", text), text
    assert "baseline: cpu-1p1d, measured in this session" in text
    assert re.search(r"cpu-1p1d: connected to prefill-node \(\S+@127.0.0.2:\d+\)", text), text
    assert re.search(r"cpu-1p1d: connected to decode-node \(\S+@127.0.0.3:\d+\)", text), text

    # exact lengths from SGLang's own usage; SGLang's /metrics scraped; every log kept
    results = [json.loads(p.read_text()) for p in sorted((out / "results").glob("*.json"))]
    results = [r for r in results if not r["workload"].get("trace_path")]  # the trace's: above
    # both workloads (token ids to /generate, exact-length text to /v1/completions) per run
    assert sorted((r["cluster"]["name"], r["workload"]["api"]) for r in results) == [
        ("cpu-1p1d", "completions"),
        ("cpu-1p1d", "generate"),
        ("cpu-2p1d", "completions"),
        ("cpu-2p1d", "generate"),
    ]
    for r in results:
        m = r["metrics"]
        assert m["completed"] == 32 and m["failed"] == 0, m
        assert m["total_input_tokens"] == 32 * 1024 and m["total_output_tokens"] == 32 * 256, m
        assert r["server_info"]["decode-0"]["disaggregation_mode"] == "decode"
        assert r["environment"]["engines"] == {name: "sglang 0.5.23" for name in r["server_info"]}
        scraped = json.dumps(r["telemetry"])
        assert "sglang:num_running_reqs" in scraped and "sglang:kv_transfer" in scraped
        # where TTFT goes: every part measured, and they add up to the client's TTFT (the prefill's
        # stages fitted into what the decode measured when, on two shared cores, they overflow it)
        b = r["ttft_breakdown"]
        assert b["missing"] == {}, b
        parts = b["parts"]
        assert all(v >= 0 for v in parts.values()) and parts["prefill"] > 0, parts
        assert sum(parts.values()) == pytest.approx(b["ttft_s"], rel=1e-9), b
        if r["workload"]["api"] == "generate":  # SGLang's meta_info: the decode timed each request
            assert (
                b["requests"] == 32
                and b["sources"]["client_router"] == b["sources"]["decode_first_step"] == MEASURED
            ), b
            assert b["ttft_s"] == pytest.approx(m["mean_ttft_ms"] / 1000.0, rel=1e-6), b
        else:  # the OpenAI API carries no server timing: the servers' run means
            assert set(b["sources"].values()) == {RUN_MEAN}, b
    runs = sorted(p for p in (out / "runs").iterdir() if p.is_dir())
    assert len(runs) == 2, runs
    for run_dir in runs:
        logs = {p.stem for p in run_dir.glob("*.log")}
        assert {"prefill-0", "decode-0", "router"} <= logs, logs
        assert "Uvicorn running" in (run_dir / "decode-0.log").read_text(
            errors="replace"
        ) or "The server is fired up" in (run_dir / "decode-0.log").read_text(errors="replace")
    assert_nothing_left(out / "runs")
    assert_nothing_left(tmp_path / "remote")
    # SGLang's engine processes (scheduler, detokenizer) may not outlive their server, even outside
    # its process group; the router's name is left out: sim sessions run the real router too
    names = subprocess.run(["ps", "-eo", "comm="], capture_output=True, text=True).stdout.split()
    assert not [n for n in names if n.startswith("sglang::") and n != "sglang::router"], names


@pytest.mark.parametrize("victim", ["decode-0", "prefill-0"])
def test_process_killed_mid_run_fails_fast_and_names_it(real_sglang: Path, tmp_path: Path, victim: str):
    folder = tmp_path / "clusters"
    real_cluster_copy("cpu-1p1d", folder, baseline=None)
    # well into the run: a measured request finished, others in flight (a fixed 5 s was not
    # enough on a loaded machine). The decode server's generated tokens: with 4 in flight, more
    # than the warm-up's 512 + 4 × 512 (+ a few for health checks) means at least one measured
    # request is done, whether SGLang counts them as they come or at the end of each request
    # (finished-request counters also count health checks).
    decode_port = yaml.safe_load((folder / "cpu-1p1d.yaml").read_text())["decode"][0]["port"]
    metrics = f"http://127.0.0.1:{decode_port}/metrics"
    killed = kill_mid_run(
        folder,
        tmp_path,
        "cpu-1p1d",
        FAULT_SUITE,
        victim,
        "cpu-1p1d: running in512",
        lambda: counter(metrics, "sglang:generation_tokens_total") >= 512 + 4 * 512 + 64,
    )
    text, took, result, out = killed.text, killed.took, killed.result, tmp_path / "out"
    m = result["metrics"]
    # the README's figures: how long, and what the client saw of the requests in flight
    print(
        f"{victim} killed: session ended {took:.1f} s later; {m['completed']} completed, "
        f"{m['failed']} failed {m['errors_by_kind']}; {m['error_examples']}"
    )
    assert killed.returncode == 1, text
    assert re.search(
        rf"cluster cpu-1p1d lost a process while running in512-\S+:\n{victim} on cpu "
        r"exited with code -9",
        text,
    ), text
    assert took < 30, f"{victim}: the session took {took:.1f} s to fail after the kill\n{text}"
    assert result["failure"]["stage"] == "run" and victim in result["failure"]["message"]
    assert m["completed"] > 0  # the requests finished before the kill are kept
    assert "\x1b[" not in text  # log tails without the router's colour codes
    assert_nothing_left(out / "runs")
