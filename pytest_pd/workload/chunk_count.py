"""Per-chunk token counts from the run's tokenizer, after the run, for streams whose chunks carried
no server count (an OpenAI API behind a router that drops ``continuous_usage_stats``).

Each request's output is tokenized once, whole (the chunks' texts joined: tokens that straddle a
chunk boundary are counted once, in the chunk where they end), and the cumulative counts are then
reconciled with the server's ``completion_tokens``: scaled to that total, at least one token per
output chunk, strictly growing. Off the client's hot path: the stream only kept each chunk's text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .record import TOKENS_ONE_PER_CHUNK, TOKENS_TOKENIZER, RequestRecord

if TYPE_CHECKING:
    from .result import RunResult


def cumulative_counts(tokenizer: Any, texts: Sequence[str]) -> np.ndarray:
    """Tokens in ``texts[0] + ... + texts[i]`` for each ``i``, by the tokenizer, with every token
    counted in the chunk where it ends (the joined text is tokenized once)."""
    if not texts:
        return np.empty(0, dtype=np.int64)
    bounds = np.cumsum([len(t) for t in texts])
    full = "".join(texts)
    try:
        enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
        ends = np.asarray([e for _, e in enc["offset_mapping"]], dtype=np.int64)
    except (NotImplementedError, TypeError, KeyError, ValueError):  # slow tokenizers: no offsets
        sizes = [len(tokenizer.encode(t, add_special_tokens=False)) for t in texts]
        return np.cumsum(sizes).astype(np.int64)
    return np.searchsorted(np.sort(ends), bounds, side="right").astype(np.int64)


def reconcile(counts: np.ndarray, total: int) -> np.ndarray:
    """``counts`` (cumulative, one per output chunk) scaled to the server's ``total`` with every
    chunk carrying at least one token and the last reaching ``total`` (needs ``total >= len``)."""
    n = counts.size
    if n == 0:
        return counts
    last = int(counts[-1])
    scaled = counts.astype(float) * (total / last) if last > 0 else np.arange(1, n + 1, dtype=float)
    idx = np.arange(n)
    # c[i] - i non-decreasing <=> c strictly growing; bounded so that each chunk keeps >= 1 token
    floor = np.maximum.accumulate(np.rint(scaled).astype(np.int64) - idx)
    floor = np.clip(floor, 1, total - n + 1)
    floor[-1] = total - n + 1
    return floor + idx


def count_chunk_tokens(records: Iterable[RequestRecord], tokenizer: Any) -> int:
    """Fill ``chunk_tokens`` from the kept chunk texts of every completed request that has no
    server counts (``token_source`` becomes ``tokenizer``); drop the texts. How many it counted."""
    done = 0
    for r in records:
        texts = r.chunk_texts
        if (
            r.error_kind is None
            and r.token_source == TOKENS_ONE_PER_CHUNK
            and texts
            and len(texts) == len(r.chunk_times)
            and r.completion_tokens is not None
            and r.completion_tokens >= len(texts)
        ):
            counts = reconcile(cumulative_counts(tokenizer, texts), r.completion_tokens)
            r.chunk_tokens = [int(c) for c in counts]
            r.token_source = TOKENS_TOKENIZER
            done += 1
        r.chunk_texts = []
    return done


def counted(result: RunResult, tokenizer: Any) -> RunResult:
    """``result`` with per-chunk token counts from ``tokenizer`` (when given) where the server
    sent none, and the chunk texts dropped."""
    if tokenizer is not None:
        count_chunk_tokens(result.records, tokenizer)
        count_chunk_tokens(result.warmup, tokenizer)
    return result
