"""Conversations on the twin, with real parts: simulated workers with hidden timing parameters
behind the real sglang-router on its default policy (2P1D), eight four-turn conversations that
resend each answer after two seconds of thought (``tests/helpers/twin_truth.CONVERSATIONS``).
The model with the hidden parameters (no fit: the conversation, router and prefix-cache models
are under test) predicts the run as 32 draws of the router's choices; the measured TTFT, TPOT,
throughput and prefix-cache hit rate must lie within the draws' 5th-95th percentile range,
widened by ``BOUND``.

``BOUND`` is set from 20 runs of this experiment on this 2-core machine at speedup 5
(``benchmarks/twin_conversations.py``). Against the draws' mean, the runs' hit rate erred by
-12.9 to +11.7 % (the draws' own range is about that wide: which prefill a turn lands on is a
coin toss) and lay outside the range by at most 4.2 %. TTFT, TPOT and throughput fell in two
groups: 15 runs within the range or up to 1.7 % outside it, and five "slow" runs with TTFT
14-24 % above the mean (up to 14.7 % outside the range) and throughput 5-12 % below (up to 9.0 %
outside). The slow runs' TPOT was above the mean too (+3.8 to +22 %, up to 9.9 % outside), and
TPOT is decided by the one decode server's batches, which no routing choice moves; we read them
as the five processes' contention for the two cores, magnified five times, without proof (their
hit rates were below the mean as well, but so were three fast runs'). Each bound is about 1.5 times
the largest distance seen. Treated as independent requests (no conversations, no prefix
cache), the model puts the throughput 25 % above."""

from __future__ import annotations

import dataclasses

import pytest

from pytest_pd.sim.model import SimParams
from pytest_pd.twin.observed import HIT_RATE, predict
from tests.helpers.twin_truth import HIDDEN, conversation_run, evicting_run

pytestmark = pytest.mark.serial  # timing judged

BOUND = {"mean_ttft_ms": 0.22, "mean_tpot_ms": 0.15, "output_throughput": 0.14, HIT_RATE: 0.07}
EVICTION_BOUND = 0.15


def test_conversations_behind_the_default_policy_are_predicted_with_their_cache_hits(tmp_path):
    got = conversation_run(tmp_path, speedup=5.0, say=lambda _: None)
    run = got.run
    assert run.requests.turns == 4 and run.requests.prefix_keys is not None
    assert run.topology.policies[0] == "random_unless_imbalanced"
    # each later turn finds the previous prompt when it lands on the same prefill (about half)
    assert 0.3 < run.measured[HIT_RATE] < 0.65
    misses = {
        stat: (
            round(run.measured[stat], 4),
            tuple(round(x, 4) for x in got.spread[stat]),
            round(got.mean[stat], 4),
        )
        for stat, bound in BOUND.items()
        if abs(got.outside(stat)) > bound
    }
    assert not misses, f"measured outside the draws' range (measured, range, mean): {misses}"
    # the same requests as independent ones, without think time or a prefix cache
    blind = dataclasses.replace(run.requests, turns=1, think_s=0.0, prefix_keys=None)
    params = dataclasses.replace(SimParams(), **HIDDEN)
    off = (
        predict(params, dataclasses.replace(run, requests=blind))["output_throughput"]
        / got.mean["output_throughput"]
    )
    assert off - 1 > BOUND["output_throughput"], off  # +25 % here


def test_the_hit_rate_under_eviction_pressure_is_predicted(tmp_path):
    """sim-pp2 with its prefill's KV pool cut to 24 576 tokens (``twin_truth.evicting_run``)
    under eight conversations that grow to 40 000 tokens: the least recently used blocks are
    evicted before some conversations come back to them, in the simulated server and in the
    model alike. Which ones depends on the order the conversations return in, which the model
    reproduces only roughly; ``EVICTION_BOUND`` is set from the runs in the commit that set it
    (``benchmarks/twin_conversations.py --eviction``). With the whole pool the model would put
    the hit rate a third higher."""
    run, params = evicting_run(tmp_path, say=lambda _: None)
    measured = run.measured[HIT_RATE]
    assert measured < 0.6  # 0.67 with the whole pool: the pool is what limits it
    assert predict(params, run)[HIT_RATE] == pytest.approx(measured, rel=EVICTION_BOUND)
    prefill = dataclasses.replace(run.topology.prefill[0], max_running_requests=None)
    whole_pool = dataclasses.replace(run, topology=dataclasses.replace(run.topology, prefill=(prefill,)))
    assert predict(params, whole_pool)[HIT_RATE] / measured - 1 > EVICTION_BOUND
