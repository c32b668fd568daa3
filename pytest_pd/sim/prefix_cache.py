"""The prefill's prefix cache (SGLang's radix cache, on unless ``--disable-radix-cache``): a
prompt's leading tokens that an earlier prompt computed need no prefill compute.

Kept as chained hashes of ``BLOCK``-token blocks (block k's key covers the whole prefix up to
it), least recently used evicted first, as many blocks as the KV pool holds tokens. SGLang
matches per token (page size 1); the simulator matches whole blocks, so a hit is rounded down to
a multiple of ``BLOCK``. A request matches when it arrives and its blocks are cached when its
prefill is done: two requests with the same new prefix in one batch both compute it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

BLOCK = 16


def block_keys(tokens: Sequence[int]) -> list[int]:
    """The chained hash of every whole ``BLOCK`` of ``tokens``."""
    keys: list[int] = []
    prev = 0
    for start in range(0, len(tokens) - BLOCK + 1, BLOCK):
        prev = hash((prev, tuple(tokens[start : start + BLOCK])))
        keys.append(prev)
    return keys


class PrefixCache:
    def __init__(self, capacity_tokens: int) -> None:
        self.capacity = max(1, capacity_tokens // BLOCK)
        self.blocks: OrderedDict[int, None] = OrderedDict()
        self.hit_tokens = 0
        self.computed_tokens = 0

    def match(self, keys: Sequence[int], prompt_tokens: int) -> int:
        """How many leading tokens of a ``prompt_tokens``-long prompt with block ``keys`` are
        cached (at most all but one: the last token is always computed); counts the hit."""
        n = 0
        for key in keys:
            if key not in self.blocks:
                break
            self.blocks.move_to_end(key)
            n += 1
        cached = min(n * BLOCK, max(0, prompt_tokens - 1))
        self.hit_tokens += cached
        self.computed_tokens += prompt_tokens - cached
        return cached

    def insert(self, keys: Sequence[int]) -> None:
        """A prefill is done: its blocks are cached (most recently used)."""
        for key in keys:
            self.blocks[key] = None
            self.blocks.move_to_end(key)
        while len(self.blocks) > self.capacity:
            self.blocks.popitem(last=False)

    def hit_rate(self) -> float:
        """Cached share of the prompt tokens since the start or the last flush."""
        total = self.hit_tokens + self.computed_tokens
        return self.hit_tokens / total if total else 0.0

    def flush(self) -> None:
        self.blocks.clear()
        self.hit_tokens = self.computed_tokens = 0
