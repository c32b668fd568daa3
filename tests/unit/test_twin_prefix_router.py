"""smg's ``cache_aware`` in the timing model (``sim/routing.py``'s ``prefix_expected_wait``): each
side's prefix tree of the prompts it routed, the cache threshold, the pressure gate that spills a
busy holder's requests, and what that does to a run's prefix cache. Pure."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from pytest_pd.sim.closed_loop import SEED_TOPOLOGIES, simulate
from pytest_pd.sim.model import SimParams
from pytest_pd.sim.prefix_cache import BLOCK
from pytest_pd.sim.routing import Polled, PrefixTree, Router, Thresholds, Topology

PRE, DEC = SEED_TOPOLOGIES["tp8"]


def _keys(group: str, shared: int, own: str, blocks: int) -> list[int]:
    """Chained-looking keys: ``shared`` blocks of ``group``'s, then the prompt's own."""
    return [hash((group, j)) for j in range(shared)] + [hash((own, j)) for j in range(shared, blocks)]


def test_the_tree_finds_the_longest_shared_prefix_and_who_holds_it():
    tree = PrefixTree()
    tree.insert(_keys("a", 4, "x", 10), 0)
    tree.insert(_keys("a", 6, "y", 10), 1)
    assert tree.match(_keys("a", 4, "z", 10)) == (4, {0, 1})  # both hold the first four blocks
    assert tree.match(_keys("a", 6, "z", 10)) == (6, {1})
    assert tree.match(_keys("b", 0, "z", 10)) == (0, set())


def test_a_prompt_sharing_over_the_threshold_follows_its_prefix():
    router = Router(2, "prefix_expected_wait", random.Random(0))
    first = router.pick(100 * BLOCK, _keys("sys", 40, "r0", 100))
    # the holder is now the busier (in flight, and sent since the poll): a 40 % match still
    # goes there, a 20 % one does not
    assert router.pick(100 * BLOCK, _keys("sys", 40, "r1", 100)) == first
    assert router.pick(100 * BLOCK, _keys("sys", 20, "r2", 100)) == 1 - first
    # the threshold is the router's --cache-threshold
    strict = Router(2, "prefix_expected_wait", random.Random(0), Thresholds(cache=0.5))
    first = strict.pick(100 * BLOCK, _keys("sys", 40, "r0", 100))
    assert strict.pick(100 * BLOCK, _keys("sys", 40, "r1", 100)) == 1 - first


def test_the_pressure_gate_is_smgs():
    gate = Thresholds()
    # over 1.5x the mean and over it by the margin: 2 sqrt(mean) rounded up, at least 4
    assert gate.gated(11, 5.5) and not gate.gated(10, 5.0)  # margins 5 and 5
    assert gate.gated(6, 1.0) and not gate.gated(5, 1.0)  # the floor of 4
    # the configured absolute threshold caps the margin
    assert Thresholds(balance_abs=2).gated(4, 1.0)
    assert not Thresholds(balance_rel=6.0).gated(6, 1.0)


def test_a_holder_over_the_gate_spills_to_the_others():
    router = Router(3, "prefix_expected_wait", random.Random(0))
    router.poll([Polled(), Polled(), Polled()])
    shared = _keys("sys", 90, "r0", 100)
    home = router.pick(100 * BLOCK, shared)
    while router.load[home] < 7:  # the prefix's home fills up while the others stay idle
        assert router.pick(100 * BLOCK, _keys("sys", 90, f"r{sum(router.load)}", 100)) == home
    # mean 7/3: margin 4, so 7 in flight is over 2.33 + 4 and over 1.5 x 2.33: it spills
    spilled = router.pick(100 * BLOCK, _keys("sys", 90, "next", 100))
    assert spilled != home
    # the spill target now holds the prefix too: the next one goes to the less loaded holder
    assert router.pick(100 * BLOCK, _keys("sys", 90, "after", 100)) == spilled


def _run(policy: str, seed: int) -> tuple[float, Counter]:
    """Eight groups of prompts sharing 4096 of 6000 tokens over two prefill servers, two at a
    time."""
    n = 32
    keys = [_keys(f"g{i % 8}", 4096 // BLOCK, f"r{i}", 6000 // BLOCK) for i in range(n)]
    topology = Topology((PRE, PRE), (DEC, DEC), policy, poll_interval_s=100.0)
    out = simulate(
        SimParams(),
        topology,
        [6000] * n,
        [100] * n,
        concurrency=2,
        seed=seed,
        prefix_keys=keys,
        warmup=[(6000, 16)],
    )
    return out["cache_hit_rate"], Counter((i % 8, p) for i, (p, _) in enumerate(out["servers"]))


def test_prompts_sharing_a_prefix_go_where_it_is_cached():
    for seed in range(5):
        by_prefix, groups = _run("prefix_expected_wait", seed)
        # each group's prompts stay on one prefill server, which computed its prefix once: the
        # group's three others find it cached
        assert sorted(groups.values()) == [4] * 8, groups
        assert by_prefix == pytest.approx(24 * 4096 / (32 * 6000))
        # routed by load alone, a group's prefix is computed on both servers
        assert _run("expected_wait", seed)[0] < by_prefix
