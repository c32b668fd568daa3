"""The discrete-event simulation of a whole run (``sim/closed_loop.simulate``) beyond one prefill
and one decode server: xPyD behind a modelled router, open-loop arrivals with a concurrency cap,
per-request lengths. Pure: no clock, no I/O."""

from __future__ import annotations

import random

import pytest

from pytest_pd.sim import routing
from pytest_pd.sim.closed_loop import SEED_TOPOLOGIES, simulate, simulate_closed_loop
from pytest_pd.sim.model import ServerShape, SimParams
from pytest_pd.sim.prefix_cache import BLOCK, block_keys
from pytest_pd.sim.routing import Topology

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
    with pytest.raises(ValueError, match="unknown routing policy 'cache_aware'"):
        Topology((PRE,), (DEC,), "cache_aware")
    with pytest.raises(ValueError, match="one entry per request"):
        simulate(P, Topology((PRE,), (DEC,)), [1, 2], [1])


def _decode_counts(topology: Topology, n: int, seed: int = 0) -> list[int]:
    """How many of ``n`` requests, all sent at once, each decode server took (fewest first)."""
    r = simulate(P, topology, [100] * n, [50] * n, concurrency=n, seed=seed)
    return sorted(sum(1 for _, d in r["servers"] if d == i) for i in range(len(topology.decode)))


def test_a_random_router_is_one_draw_per_seed_and_reproducible():
    t = Topology((PRE,), (DEC, DEC), "random")
    assert t.random and not Topology((PRE,), (DEC,), "random").random
    draws = [_decode_counts(t, 30, seed) for seed in range(12)]
    assert draws[3] == _decode_counts(t, 30, 3)  # the same seed, the same choices
    assert len({tuple(d) for d in draws}) > 1  # other seeds, other splits
    assert any(d != [15, 15] for d in draws)  # uneven splits happen: one decode runs a bigger batch
    assert all(sum(d) == 30 for d in draws)


def test_sglang_router_cache_aware_is_random_until_the_loads_are_imbalanced():
    """sglang-router 0.3.2 in PD mode: random while max - min <= 64 or max <= 1.5 x min, else the
    least loaded."""
    small = [
        _decode_counts(Topology((PRE,), (DEC, DEC), "random_unless_imbalanced"), 30, s) for s in range(8)
    ]
    assert any(d != [15, 15] for d in small)
    router = routing.Router(2, "random_unless_imbalanced", random.Random(0))
    router.load = [100, 10]  # gap 90 > 64 and 100 > 1.5 x 10: imbalanced
    assert {router.pick() for _ in range(20)} == {1}
    router.load = [100, 70]  # gap 30: balanced, random again
    assert {router.pick() for _ in range(40)} == {0, 1}


def test_power_of_two_never_picks_the_busier_of_its_two():
    # two servers: power of two always compares both, so it is least-load with the first pick on a tie
    counts = _decode_counts(Topology((PRE,), (DEC, DEC), "power_of_two"), 30)
    assert counts == [15, 15]


def test_one_side_may_route_by_another_policy():
    t = Topology((PRE, PRE), (DEC, DEC), "round_robin", decode_policy="random")
    assert t.policies == ("round_robin", "random") and t.random


def _keys(*prefix: int, own: int, blocks: int = 100) -> list[int]:
    """Chained keys of a prompt: the shared ``prefix`` blocks, then ``own`` distinct ones."""
    return block_keys([*prefix, *range(1000 * own, 1000 * own + blocks * BLOCK - len(prefix))])


def test_a_prefix_cached_before_it_arrives_needs_no_prefill():
    """Two 1600-token prompts sharing their first 1024 tokens: the second, sent after the first's
    prefill is done, computes only its own 576 (its TTFT shorter, the hit rate 1024 of 3200
    tokens); sent at the same time, both compute everything, as the simulated server does."""
    shared = list(range(1024))
    keys = [_keys(*shared, own=1), _keys(*shared, own=2)]
    topo = Topology((PRE,), (DEC,))
    later = simulate(P, topo, [1600, 1600], [2, 2], arrivals=[0.0, 30.0], prefix_keys=keys)
    alone = simulate(P, topo, [1600], [2], prefix_keys=keys[:1])
    assert later["cache_hit_rate"] == pytest.approx(1024 / 3200)
    assert later["requests"][1]["ttft"] < alone["requests"][0]["ttft"]
    together = simulate(P, topo, [1600, 1600], [2, 2], arrivals=[0.0, 0.0], prefix_keys=keys)
    assert together["cache_hit_rate"] == 0.0
    assert "cache_hit_rate" not in simulate(P, topo, [1600], [2])  # no keys, no cache


def test_each_prefill_server_caches_what_it_prefilled_itself():
    shared = list(range(1024))
    keys = [_keys(*shared, own=i) for i in range(4)]
    rr = Topology((PRE, PRE), (DEC,), "round_robin")  # 0, 1, 0, 1: the first two miss, then hits
    r = simulate(P, rr, [1600] * 4, [2] * 4, arrivals=[0.0, 1.0, 30.0, 31.0], prefix_keys=keys)
    assert r["cache_hit_rate"] == pytest.approx(2 * 1024 / 6400)


def test_the_cache_keeps_what_the_kv_pool_holds():
    tiny = ServerShape(tp=8, max_running_requests=1)  # a pool of 8192 tokens
    keys = [_keys(own=i, blocks=300) for i in range(3)]  # 4800 tokens each: the third evicts the first
    again = [*keys, keys[0]]
    r = simulate(
        P, Topology((tiny,), (DEC,)), [4800] * 4, [2] * 4, arrivals=[0, 30, 60, 90], prefix_keys=again
    )
    assert r["cache_hit_rate"] == 0.0
