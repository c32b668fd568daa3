"""The simulator's prefix cache (sim/prefix_cache.py): whole-block prefix matches, the last
token always computed, least recently used blocks evicted first, flush."""

from __future__ import annotations

from pytest_pd.sim.model import PrefillScheduler, SimParams
from pytest_pd.sim.prefix_cache import BLOCK, PrefixCache, block_keys


def test_a_shared_prefix_matches_whole_blocks_only():
    cache = PrefixCache(10_000)
    a = list(range(100))
    cache.insert(block_keys(a))
    b = a[:40] + [999] * 60  # shares 40 tokens: 2 whole blocks
    assert cache.match(block_keys(b), len(b)) == 2 * BLOCK
    assert cache.match(block_keys(a), len(a)) == 6 * BLOCK  # 96 of 100: the tail is no whole block
    c = [7] + a[1:]  # the first token differs: the chain breaks at once
    assert cache.match(block_keys(c), len(c)) == 0
    assert cache.hit_rate() == (32 + 96) / 300


def test_the_last_token_is_always_computed():
    cache = PrefixCache(10_000)
    a = list(range(64))
    cache.insert(block_keys(a))
    assert cache.match(block_keys(a), len(a)) == 63


def test_least_recently_used_blocks_go_first_and_flush_empties():
    cache = PrefixCache(4 * BLOCK)  # room for 4 blocks
    old, new = list(range(2 * BLOCK)), list(range(1000, 1000 + 3 * BLOCK))
    cache.insert(block_keys(old))
    cache.insert(block_keys(new))  # 5 blocks: the oldest one goes
    assert cache.match(block_keys(old), 10 * BLOCK) == 0  # its first block is gone: no prefix left
    assert cache.match(block_keys(new), 10 * BLOCK) == 3 * BLOCK
    cache.flush()
    assert cache.match(block_keys(new), 10 * BLOCK) == 0 and cache.hit_rate() == 0.0


def test_cached_tokens_are_not_computed_but_count_as_context():
    params = SimParams()
    cold, warm = PrefillScheduler(params, tp=8), PrefillScheduler(params, tp=8)
    cold.submit("a", 6000)
    warm.submit("a", 6000, cached=4096)
    cold_batch, warm_batch = cold.next_batch(0.0), warm.next_batch(0.0)
    assert warm_batch.pieces == (("a", 6000 - 4096, 4096),)
    assert warm_batch.done_at < cold_batch.done_at
