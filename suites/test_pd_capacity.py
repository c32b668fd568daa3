"""Nightly capacity: how much load the candidate takes before it breaks its SLOs, against its
baseline. One bring-up per cluster; each load of the search is the seed workload at that
concurrency (2 requests per slot), measured in turn (~45 s per cluster on the sim-* files).

On the simulated demo pair (sim-*, what `make run` runs: a first look in about a minute) the
search sends the seed's prompts with a tenth of its outputs and measures three loads a side, and
so takes a fraction of the time; every other cluster searches with the seed workload itself.

Run with:  pytest suites/test_pd_capacity.py --cluster=sim-pp2      (or h20-pp2 on the real cluster)
"""

import dataclasses

import pytest

from pytest_pd import Workload, clusters

SEED = Workload(input_len=6000, output_len=1000, concurrency=16, num_requests=32)

# An interactive SLO for 6000-token prompts: 90 % of first tokens within 10 s, of tokens after
# within 50 ms. PP=2 prefill pays for its throughput with TTFT, so its capacity under this SLO is
# lower than TP=8's (the timing model: 22 vs 24 requests in flight); the bound says it may not
# fall below three quarters of the baseline's.
SLO = {"p90_ttft_ms": 10_000, "p90_tpot_ms": 50}
NIGHTLY = pytest.mark.pd_capacity(slo=SLO, over="concurrency", start=16, max_points=5, min_ratio=0.75)
# The demo searches from 20 in steps of a quarter: three loads a side (20, 25, then 22) where
# the nightly search measures five (16, 32, 24, 20, 22).
DEMO = pytest.mark.pd_capacity(
    slo=SLO, over="concurrency", start=20, growth=1.25, max_points=3, min_ratio=0.75
)
WORKLOADS = [
    pytest.param(SEED, marks=[clusters(exclude="sim-*"), NIGHTLY]),
    pytest.param(dataclasses.replace(SEED, output_len=100), marks=[clusters("sim-*"), DEMO]),
]


@clusters(exclude="cpu-*")
@pytest.mark.parametrize("pd_workload", WORKLOADS, ids=lambda w: w.id)
def test_capacity_under_interactive_slo(pd_capacity):
    found = pd_capacity.candidate.capacity
    assert found is not None and found.capacity is not None, "no load met the SLOs"
