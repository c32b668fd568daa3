"""The seed's experiment in miniature on real SGLang: a prefill server split by pipeline (cpu-pp2:
PP=2, one layer per process) against one split by tensor (cpu-tp2: TP=2, half of every layer per
process), each handing its KV to one decode server.

Run with:  pytest suites/ --cluster=cpu-pp2     (after `make real-sglang`)

Two tests: the seed's comparison (TTFT, throughput, TPOT of the candidate against its baseline,
in the report's table), and the question a split must answer first: does it still compute the
same thing? Each cluster is asked one greedy question when it comes up (conftest.py) and must
give, token for token, the answer of one SGLang process (TP=1, PP=1) recorded in
data/tiny-llama-greedy.json. The clusters run in float32, where a token wins by at least 0.038 in
log-probability and the split's rounding moves it by about 1e-6: a different token is a wrong
split (layers in the wrong stage, heads on the wrong rank, KV sent to the wrong place), not noise.
"""

import json
from pathlib import Path

import pytest

from pytest_pd import Workload, clusters, threshold

ONE_PROCESS = json.loads((Path(__file__).parent / "data" / "tiny-llama-greedy.json").read_text())

# The seed's shape, sized for two CPU cores (as test_pd_acceptance.py's CPU workload).
SPLIT = Workload(input_len=1024, output_len=256, concurrency=8, num_requests=32)


# Seen here (32 x 1024 -> 256 at c8): cpu-pp2 TTFT 0.75-0.94 s, 331-391 tok/s, TPOT 17-20 ms;
# cpu-tp2 1.27 s, 193 tok/s, 36 ms. The baseline's decode is TP=2 too (two processes and a gloo
# all-reduce per layer per step, on the same two cores as everything else), so its TPOT is about
# twice PP's: the ratio bounds hold either cluster as the candidate against the other with room
# for the run-to-run spread of two shared cores (TTFT 0.50-0.75 s between two runs of cpu-pp2).
# The absolute bounds catch a broken engine or a stalled KV transfer.
@clusters("cpu-pp2", "cpu-tp2")
@threshold("mean_ttft_ms", max_ratio=3.0, max=5000)
@threshold("output_throughput", min_ratio=0.33, min=20)
@threshold("mean_tpot_ms", max_ratio=3.0, max=500)
@pytest.mark.parametrize("pd_workload", [SPLIT], ids=lambda w: w.id)
def test_pipeline_against_tensor_parallel_prefill(pd_run, pd_workload):
    assert pd_run.candidate.metrics["completed"] == pd_workload.num_requests
    assert pd_run.candidate.metrics["total_input_tokens"] == pd_workload.num_requests * pd_workload.input_len
    assert pd_run.baseline is not None and pd_run.baseline.metrics["completed"] == pd_workload.num_requests


@clusters("cpu-pp2", "cpu-tp2")
def test_split_prefill_answers_like_one_process(pd_measurer, pd_spec, greedy_answers):
    for spec in (pd_spec, pd_measurer.baseline_of(pd_spec)):
        if spec.name not in greedy_answers:
            pd_measurer.up(spec)  # conftest.py asks it as it comes up
        got = greedy_answers[spec.name]
        want = ONE_PROCESS["output_ids"]
        first = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), None)
        assert got == want, (
            f"{spec.name} answered the greedy question differently from one SGLang process "
            f"(first difference at output token {first}): {got} != {want}"
        )
