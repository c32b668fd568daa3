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


# Measured here, 20 runs of each cluster (32 x 1024 -> 256 at c8, each cluster held up): mean TTFT
# cpu-pp2 0.36-1.50 s, cpu-tp2 0.33-1.09 s; throughput 444-713 and 319-420 tok/s; TPOT 9.2-12.8
# and 17.5-22.3 ms. The baseline's decode is TP=2 too (two processes and a gloo all-reduce per
# layer per step, on the same two cores as everything else), so its TPOT is about twice PP's.
# TTFT is mostly eight prompts queueing at once, so its ratio spreads widest: over the 400 pairs
# of runs pp2/tp2 went 0.33-4.6x (above 3x in 9 % of them; one suite run failed at 3.7x), tp2/pp2
# 0.22-3.0x. Each bound is the 99.9th percentile (0.1th for throughput) of the ratio with both
# clusters' numbers log-normal, the worse of the two directions, so either cluster may be the
# candidate: TTFT 7.7x -> 8, throughput 0.41x -> 0.33, TPOT 2.5x -> 3. The absolute bounds catch
# a broken engine or a stalled KV transfer.
@clusters("cpu-pp2", "cpu-tp2")
@threshold("mean_ttft_ms", max_ratio=8.0, max=5000)
@threshold("output_throughput", min_ratio=0.33, min=20)
@threshold("mean_tpot_ms", max_ratio=3.0, max=500)
@pytest.mark.parametrize("pd_workload", [SPLIT], ids=lambda w: w.id)
def test_pipeline_against_tensor_parallel_prefill(pd_run, pd_workload):
    assert pd_run.candidate.metrics["completed"] == pd_workload.num_requests, pd_run.failure_message()
    assert pd_run.candidate.metrics["total_input_tokens"] == pd_workload.num_requests * pd_workload.input_len
    assert pd_run.baseline is not None and pd_run.baseline.metrics["completed"] == pd_workload.num_requests, (
        pd_run.failure_message()
    )


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
