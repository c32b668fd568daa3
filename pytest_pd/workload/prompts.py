"""Token-exact prompts for a workload (``spec.Workload``) from the cluster's tokenizer.

Two kinds of prompt, both exact:

- **token ids** (``/generate``'s ``input_ids``, or a token-id ``prompt`` for ``/v1/completions``):
  ids drawn uniformly from the tokenizer's non-special vocabulary; the server counts exactly
  ``len(ids)``.
- **text** (``/v1/completions`` through the router, which rejects token-id prompts): text that the
  cluster's tokenizer re-encodes to exactly the requested number of tokens. Built from a *pool* of
  word pieces (a token whose text starts with a word boundary and encodes to itself alone); the pool
  is validated once per tokenizer on random concatenations, so a prompt made of pool pieces encodes
  to exactly its pieces. Tokenizers where that does not hold (merges across word boundaries, odd
  normalizers) fall back to decode -> re-encode -> trim/extend -> verify per prompt. Every text is
  kept free of added/special tokens' contents, and verified by re-encoding (all prompts, or a
  seeded sample when there are very many tokens; see :data:`VERIFY_ALL_MAX_TOKENS`). The server's
  own count is checked again per request (``input_len_mismatches`` in the summary).

Workloads: fixed lengths (``range_ratio=1``), uniform ranges, shared-prefix groups (prefix
caching), a JSONL dataset file, or a Mooncake-format request trace (:mod:`.trace`).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from .chat import chat_prompts
from .conversation import prefix_group
from .dataset import dataset_prompts
from .lengths import draw_lengths
from .spec import API_CHAT, Prompt, Workload, WorkloadError
from .text import TextBuilder, text_builder
from .tokenizer import candidate_token_ids, vocab_size
from .trace import trace_prompts

VERIFY_ALL_MAX_TOKENS = 4_000_000
"""Text prompts are all re-encoded when they hold at most this many tokens together (~4 s); above
it a seeded sample of that size is re-encoded (the construction is exact by the pool's validation,
and the server's count is checked per request anyway)."""


_PROMPT_CACHE: OrderedDict[tuple[Any, ...], list[Prompt]] = OrderedDict()
_PROMPT_CACHE_SIZE = 8


def _cache_key(tokenizer: Any, workload: Workload) -> tuple[Any, ...] | None:
    ds = workload.dataset_path or workload.trace_path
    stamp = None
    if ds:
        try:
            st = Path(ds).expanduser().stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            return None
    return (
        id(tokenizer),
        getattr(tokenizer, "name_or_path", None),
        vocab_size(tokenizer),
        workload.input_len,
        workload.output_len,
        workload.num_requests,
        workload.range_ratio,
        workload.seed,
        workload.sends_text,
        workload.prefix_groups,
        workload.prefix_len,
        ds,
        stamp,
        workload.text_special_tokens,
        workload.trace_block_size,
    )


def build_prompts(tokenizer: Any, workload: Workload, *, verify: bool = True) -> list[Prompt]:
    """``workload.num_requests`` token-exact prompts, reproducible from ``workload.seed``.

    Token-id prompts for ``/generate`` (and ``completions_prompt='ids'``); exact-length text for
    ``/v1/completions`` and the chat API (there each prompt's length is what the server counts
    with the tokenizer's chat template, or unknown without one: :mod:`.chat`). Results are cached
    in memory per (tokenizer, workload lengths and seed). ``verify`` re-encodes text prompts (all,
    or a seeded sample above :data:`VERIFY_ALL_MAX_TOKENS` tokens) and raises
    :class:`WorkloadError` on any difference.
    """
    prompts = _build_prompts(tokenizer, workload, verify)
    return chat_prompts(tokenizer, prompts) if workload.api == API_CHAT else prompts


def _build_prompts(tokenizer: Any, workload: Workload, verify: bool) -> list[Prompt]:
    key = _cache_key(tokenizer, workload)
    if key is not None and key in _PROMPT_CACHE:
        _PROMPT_CACHE.move_to_end(key)
        return list(_PROMPT_CACHE[key])
    if workload.trace_path:
        prompts = trace_prompts(tokenizer, workload)
    elif workload.dataset_path:
        prompts = dataset_prompts(tokenizer, workload)
    elif workload.sends_text:
        prompts = _text_prompts(tokenizer, workload, verify=verify)
    else:
        prompts = _id_prompts(tokenizer, workload)
    if key is not None:
        _PROMPT_CACHE[key] = prompts
        while len(_PROMPT_CACHE) > _PROMPT_CACHE_SIZE:
            _PROMPT_CACHE.popitem(last=False)
    return list(prompts)


def _id_prompts(tokenizer: Any, workload: Workload) -> list[Prompt]:
    rng = np.random.default_rng(workload.seed)
    candidates = candidate_token_ids(tokenizer)
    dtype = np.int32 if candidates[-1] < 2**31 else np.int64
    input_lens, output_lens = draw_lengths(workload, rng)
    plen = workload.prefix_len
    groups = workload.prefix_groups
    prefixes = (
        rng.choice(candidates, size=(groups, plen)).astype(dtype) if groups else np.empty((0, 0), dtype=dtype)
    )
    group = [prefix_group(workload, i) for i in range(len(input_lens))]
    own = input_lens - np.array([plen if g is not None else 0 for g in group], dtype=input_lens.dtype)
    flat = rng.choice(candidates, size=int(own.sum())).astype(dtype)
    bodies = np.split(flat, np.cumsum(own)[:-1])
    prompts = []
    for g, body, out_len in zip(group, bodies, output_lens.tolist(), strict=True):
        ids = np.concatenate((prefixes[g], body)) if g is not None else body
        prompts.append(Prompt(token_ids=ids, output_len=int(out_len)))
    return prompts


def _text_prompts(tokenizer: Any, workload: Workload, *, verify: bool) -> list[Prompt]:
    tb = text_builder(tokenizer, workload.text_special_tokens)
    rng = np.random.default_rng(workload.seed)
    input_lens, output_lens = draw_lengths(workload, rng)
    groups, plen = workload.prefix_groups, workload.prefix_len
    prompts: list[Prompt] = []
    if tb.exact_by_construction:
        pool = tb.pool
        prefix_ids = [rng.choice(pool, size=plen) for _ in range(groups)]
        prefix_text = [tb.from_pool(p) for p in prefix_ids]
        for i, (n, out_len) in enumerate(zip(input_lens.tolist(), output_lens.tolist(), strict=True)):
            want = tb.content_len(int(n))
            g = prefix_group(workload, i)
            head_ids = prefix_ids[g] if g is not None else pool[:0]
            head = prefix_text[g] if g is not None else ""
            while True:
                ids = np.concatenate((head_ids, rng.choice(pool, size=want - len(head_ids))))
                text = head + tb.from_pool(ids[len(head_ids) :])
                if tb._clean(text):
                    break
            prompts.append(
                Prompt(token_ids=ids.astype(np.int32), output_len=int(out_len), text=text, prompt_len=int(n))
            )
    else:
        prefixes = []
        for _ in range(groups):
            text, _ids = tb.fallback(rng, tb.content_len(plen) if plen else 0)
            prefixes.append(text)
        for i, (n, out_len) in enumerate(zip(input_lens.tolist(), output_lens.tolist(), strict=True)):
            g = prefix_group(workload, i)
            head = prefixes[g] if g is not None else ""
            head_len = len(tb.encode(head)) if head else 0
            tail, tail_ids = tb.fallback(rng, tb.content_len(int(n)) - head_len, prefix=head)
            prompts.append(
                Prompt(
                    token_ids=np.asarray(tail_ids, dtype=np.int64),
                    output_len=int(out_len),
                    text=head + tail,
                    prompt_len=int(n),
                )
            )
    if verify:
        verify_text_prompts(tb, prompts, seed=workload.seed)
    return prompts


def verify_text_prompts(
    tb: TextBuilder, prompts: list[Prompt], *, seed: int = 0, max_tokens: int = VERIFY_ALL_MAX_TOKENS
) -> int:
    """Re-encode text prompts (all, or a seeded sample of about ``max_tokens`` tokens) and raise
    :class:`WorkloadError` on the first whose count differs. Returns how many were checked."""
    idx = np.arange(len(prompts))
    total = sum(len(p) for p in prompts)
    if total > max_tokens and prompts:
        k = max(1, int(len(prompts) * max_tokens / total))
        idx = np.sort(np.random.default_rng([seed, 7]).choice(idx, size=k, replace=False))
    texts = [prompts[i].text or "" for i in idx.tolist()]
    encs = tb.encode_many(texts, add_special_tokens=tb.extra > 0)
    for i, enc in zip(idx.tolist(), encs, strict=True):
        if len(enc) != len(prompts[i]):
            raise WorkloadError(
                f"Text prompt {i} re-tokenizes to {len(enc)} tokens instead of {len(prompts[i])}: "
                "this tokenizer does not round-trip the prompt builder's text; use token-id "
                "prompts (api='generate' or completions_prompt='ids')."
            )
    return len(texts)
