"""Acceptance suite: the seed report's workload, candidate cluster vs its baseline.

Run with:  pytest suites/ --cluster=sim-pp2      (or h20-pp2 on the real cluster)

Each workload is measured once per cluster per session (the candidate first, then its baseline,
never both at once). The bounds are those the seed's own result satisfies: PP=2 had 1.40× the
TTFT of TP=8, 1.009× its throughput and 0.957× its TPOT.
"""

import pytest

from pytest_pd.workload.prompts import Workload

WORKLOADS = [
    # The seed: perf_bench.py --parallel 16 --number 32 --input-length 6000 --output-length 1000
    Workload(input_len=6000, output_len=1000, concurrency=16, num_requests=32),
]


@pytest.mark.pd_threshold("mean_ttft_ms", max_ratio=1.5)
@pytest.mark.pd_threshold("output_throughput", min_ratio=0.97)
@pytest.mark.pd_threshold("mean_tpot_ms", max_ratio=1.05)
@pytest.mark.parametrize("pd_workload", WORKLOADS, ids=lambda w: w.id)
def test_seed_workload_within_bounds_of_baseline(pd_run):
    # The markers above are the assertions; the plugin fails the test on any violated bound,
    # on any failed request and on any output-length mismatch. Sanity of the measurement itself:
    assert pd_run.candidate.metrics["completed"] == 32
    assert pd_run.baseline is not None and pd_run.baseline.metrics["completed"] == 32
