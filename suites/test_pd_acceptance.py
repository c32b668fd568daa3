"""Acceptance suite: a workload on the candidate cluster vs its baseline.

Run with:  pytest suites/ --cluster=sim-pp2      (or h20-pp2 on the real cluster,
           or cpu-1p1d / cpu-2p1d: real SGLang on this machine's CPU, after `make real-sglang`,
           or cpu-pp2 / cpu-tp2: the seed's PP-against-TP pair on real SGLang (test_pd_parallel.py),
           or cpu-vllm-1p1d: real vLLM against real SGLang, after both `make real-*`)

Each workload is measured once per cluster per session (the candidate first, then its baseline,
never both at once).
"""

import pytest

from pytest_pd import Workload, clusters, threshold

# The seed: perf_bench.py --parallel 16 --number 32 --input-length 6000 --output-length 1000
SEED = Workload(input_len=6000, output_len=1000, concurrency=16, num_requests=32)

# Real SGLang on two CPU cores with a tiny model: the seed's shape (long prompts, outputs a sixth
# of the input, a concurrency cap), sized to run in well under a minute per cluster.
# Token ids to /generate, and exact-length text to /v1/completions (checked against SGLang's usage).
CPU = Workload(input_len=1024, output_len=256, concurrency=8, num_requests=32)
CPU_TEXT = Workload(input_len=1024, output_len=256, concurrency=8, num_requests=32, api="completions")


# The bounds are those the seed's own result satisfies, with room for run-to-run noise: PP=2 had
# 1.40x the TTFT of TP=8, 1.009x its throughput and 0.957x its TPOT in one run each. Both share
# the same decode server, so throughput differs only by how full PP's decode batch is; the
# simulator's physical model puts PP=2 at 0.97x, and "at most 5 % less throughput" is the claim.
@clusters(exclude="cpu-*")
@threshold("mean_ttft_ms", max_ratio=1.5)
@threshold("output_throughput", min_ratio=0.95)
@threshold("mean_tpot_ms", max_ratio=1.05)
@pytest.mark.parametrize("pd_workload", [SEED], ids=lambda w: w.id)
def test_seed_workload_within_bounds_of_baseline(pd_run):
    # The markers above are the assertions; the plugin fails the test on any violated bound,
    # on any failed request and on any output-length mismatch. Sanity of the measurement itself:
    assert pd_run.candidate.metrics["completed"] == 32, pd_run.failure_message()
    assert pd_run.baseline is not None and pd_run.baseline.metrics["completed"] == 32, (
        pd_run.failure_message()
    )


# 1P1D vs 2P1D on two shared cores: both topologies share the same CPUs, so the bounds say
# "same order of magnitude", not "faster". Seen between runs on this 2-core machine: TTFT
# 0.07-0.81 s (a ratio of 0.4-5.5), throughput ratio 0.76-1.2, TPOT ratio 0.96-1.12. The absolute
# bounds catch a broken engine (a stalled KV transfer shows as seconds of TTFT).
@clusters("cpu-*", exclude=("cpu-vllm-*", "cpu-pp2", "cpu-tp2"))  # those two: test_pd_parallel.py
@threshold("mean_ttft_ms", max_ratio=10.0, max=5000)
@threshold("output_throughput", min_ratio=0.5, min=20)
@threshold("mean_tpot_ms", max_ratio=2.0, max=500)
@pytest.mark.parametrize("pd_workload", [CPU, CPU_TEXT], ids=lambda w: w.id)
def test_cpu_workload_within_bounds_of_baseline(pd_run, pd_workload):
    assert pd_run.candidate.metrics["completed"] == pd_workload.num_requests, pd_run.failure_message()
    assert pd_run.candidate.metrics["total_input_tokens"] == (
        pd_workload.num_requests * pd_workload.input_len
    )
    assert pd_run.baseline is not None


# vLLM (cpu-vllm-1p1d) against SGLang (its baseline cpu-1p1d) on the same two cores and model,
# over the one API both serve: the table answers "which engine, here?"; the bounds only catch a
# broken engine or a stalled KV transfer. Seen here (one run of this workload): vLLM's TTFT 7.2 s
# against SGLang's 0.63 s (11.4x), throughput 92 against 317 tok/s (0.29x), TPOT 53 against 22 ms
# (2.4x): vLLM's CPU build is the slower engine on this machine, and an idle NIXL server spins a core.
# How much slower depends on the CPU (another machine's vLLM was 5x slower again, SGLang not), so
# the one ratio bound is on what both must agree on exactly: every output token asked for; the
# ceilings leave room for that 5x.
@clusters("cpu-vllm-*")
@threshold("total_output_tokens", min_ratio=1.0, max_ratio=1.0)
@threshold("mean_ttft_ms", max=60000)
@threshold("mean_tpot_ms", max=500)
@pytest.mark.parametrize("pd_workload", [CPU_TEXT], ids=lambda w: w.id)
def test_vllm_workload_against_sglang(pd_run, pd_workload):
    assert pd_run.candidate.metrics["completed"] == pd_workload.num_requests, pd_run.failure_message()
    assert pd_run.candidate.metrics["total_input_tokens"] == (
        pd_workload.num_requests * pd_workload.input_len
    )
    assert pd_run.baseline is not None
