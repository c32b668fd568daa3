"""The discrete-event simulation of a whole run (``sim/closed_loop.simulate``) beyond one prefill
and one decode server: xPyD behind a modelled router, open-loop arrivals with a concurrency cap,
per-request lengths. Pure: no clock, no I/O."""

from __future__ import annotations

import pytest

from pytest_pd.sim.closed_loop import SEED_TOPOLOGIES, Topology, simulate, simulate_closed_loop
from pytest_pd.sim.model import ServerShape, SimParams

P = SimParams()
PRE, DEC = SEED_TOPOLOGIES["tp8"]
MEANS = ("mean_ttft_s", "mean_tpot_ms", "mean_e2e_latency_s")


def test_two_independent_pairs_behave_as_one_pair_each():
    """2P2D, round robin, twice the load: each pair sees exactly what one pair sees alone."""
    one = simulate_closed_loop(P, PRE, DEC, 6000, 200, 8, 16)
    two = simulate(P, Topology((PRE, PRE), (DEC, DEC)), [6000] * 32, [200] * 32, concurrency=16)
    for m in MEANS:
        assert two[m] == pytest.approx(one[m], rel=1e-9)
    assert two["output_throughput"] == pytest.approx(2 * one["output_throughput"], rel=1e-9)


def test_a_second_prefill_server_halves_the_prefill_queue():
    burst = dict(concurrency=8)
    one = simulate(P, Topology((PRE,), (DEC,)), [6000] * 8, [2] * 8, **burst)
    two = simulate(P, Topology((PRE, PRE), (DEC,)), [6000] * 8, [2] * 8, **burst)
    assert two["mean_ttft_s"] < 0.7 * one["mean_ttft_s"]


@pytest.mark.parametrize("policy", ["round_robin", "least_load"])
def test_policies_spread_requests_over_the_decode_servers(policy):
    # one decode server capped at one running request: the second one doubles the decode capacity
    capped = ServerShape(tp=8, max_running_requests=1)
    one = simulate(P, Topology((PRE,), (capped,), policy), [200] * 8, [400] * 8, concurrency=8)
    two = simulate(P, Topology((PRE,), (capped, capped), policy), [200] * 8, [400] * 8, concurrency=8)
    assert two["duration_s"] < 0.6 * one["duration_s"]


def test_least_load_avoids_the_busy_server_round_robin_does_not():
    """Long and short requests alternate: round robin sends every long one to the same decode
    server; least-load balances what is in flight."""
    lens_out = [400, 10] * 8
    rr = simulate(P, Topology((PRE,), (DEC, DEC), "round_robin"), [500] * 16, lens_out, concurrency=4)
    ll = simulate(P, Topology((PRE,), (DEC, DEC), "least_load"), [500] * 16, lens_out, concurrency=4)
    assert ll["duration_s"] < rr["duration_s"]


def test_open_loop_at_a_low_rate_sees_an_idle_cluster_each_time():
    alone = simulate_closed_loop(P, PRE, DEC, 2000, 20, 1, 1)
    spaced = simulate(P, Topology((PRE,), (DEC,)), [2000] * 4, [20] * 4, arrivals=[0, 100, 200, 300])
    for q in spaced["requests"]:
        assert q["ttft"] == pytest.approx(alone["mean_ttft_s"])
        assert q["latency"] == pytest.approx(alone["mean_e2e_latency_s"])
    assert [q["send"] for q in spaced["requests"]] == [0, 100, 200, 300]


def test_the_concurrency_cap_holds_requests_until_a_slot_frees():
    r = simulate(P, Topology((PRE,), (DEC,)), [1000] * 6, [30] * 6, concurrency=2, arrivals=[0.0] * 6)
    spans = [(q["send"], q["finish"]) for q in r["requests"]]
    for t, _ in spans:  # never more than 2 in flight at any send
        assert sum(1 for s, f in spans if s <= t < f) <= 2
    assert sorted(s for s, _ in spans)[2] > 0  # the third waited


def test_each_request_gets_its_own_lengths():
    r = simulate(P, Topology((PRE,), (DEC,)), [100, 3000, 8000], [5, 50, 1], concurrency=3)
    assert [q["output_len"] for q in r["requests"]] == [5, 50, 1]
    assert r["output_throughput"] == pytest.approx(56 / r["duration_s"])


def test_bad_topologies_and_inputs_are_refused():
    with pytest.raises(ValueError, match="at least one prefill and one decode"):
        Topology((), (DEC,))
    with pytest.raises(ValueError, match="unknown routing policy 'random'"):
        Topology((PRE,), (DEC,), "random")
    with pytest.raises(ValueError, match="one entry per request"):
        simulate(P, Topology((PRE,), (DEC,)), [1, 2], [1])
