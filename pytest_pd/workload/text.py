"""Exact-length text for one tokenizer: a pool of word pieces validated once per tokenizer (a
prompt made of pool pieces encodes to exactly its pieces), else decode -> re-encode -> trim/extend
-> verify per prompt. Texts stay free of added/special tokens' contents."""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from .spec import WorkloadError
from .tokenizer import added_tokens, candidate_token_ids, vocab_size

POOL_MIN_SIZE = 64
POOL_VALIDATION_SEQS = 24
POOL_VALIDATION_LEN = 384
FALLBACK_MAX_ROUNDS = 40


class TextBuilder:
    """Exact-length text for one tokenizer (see the module docstring). Cached per tokenizer."""

    def __init__(self, tokenizer: Any, *, special_tokens: bool = True) -> None:
        self.tokenizer = tokenizer
        self.fast = getattr(tokenizer, "backend_tokenizer", None)
        self.candidates = candidate_token_ids(tokenizer)
        self.forbidden = sorted(
            {
                str(getattr(t, "content", t))
                for t in added_tokens(tokenizer).values()
                if str(getattr(t, "content", t))
            }
            | {str(s) for s in (getattr(tokenizer, "all_special_tokens", None) or []) if s}
        )
        self.extra = self._special_overhead() if special_tokens else 0
        self.pieces: np.ndarray | None = None  # object array: id -> its text piece ("" = unusable)
        self.pool = self._pool()

    # -- tokenizer access ------------------------------------------------------------------
    def encode_many(self, texts: list[str], add_special_tokens: bool = False) -> list[list[int]]:
        if self.fast is not None:
            return [e.ids for e in self.fast.encode_batch(texts, add_special_tokens=add_special_tokens)]
        return [list(self.tokenizer.encode(t, add_special_tokens=add_special_tokens)) for t in texts]

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self.encode_many([text], add_special_tokens)[0]

    def decode(self, ids: Any) -> str:
        ids = [int(i) for i in ids]
        if self.fast is not None:
            return self.fast.decode(ids, skip_special_tokens=False)
        return self.tokenizer.decode(ids)

    def count(self, text: str) -> int:
        """Tokens the server counts for ``text`` (with the special tokens the tokenizer adds)."""
        return len(self.encode(text, add_special_tokens=self.extra > 0))

    def _special_overhead(self) -> int:
        probe = "hello world"
        return max(0, len(self.encode(probe, True)) - len(self.encode(probe, False)))

    def _clean(self, text: str) -> bool:
        return not any(f in text for f in self.forbidden)

    # -- the pool of word pieces -----------------------------------------------------------
    def _pool(self) -> np.ndarray:
        cands = self.candidates
        if cands.size < 2:
            return np.empty(0, dtype=np.int64)
        ref = int(cands[0])
        ref_text = self.decode([ref])
        pieces = np.full(vocab_size(self.tokenizer), "", dtype=object)
        good: list[int] = []
        texts: list[str] = []
        ids: list[int] = []
        for i in (int(x) for x in cands):
            whole = self.decode([ref, i])
            if not whole.startswith(ref_text):
                continue
            piece = whole[len(ref_text) :]
            # a word boundary, then letters only: pre-tokenizers split before it, so a piece never
            # merges with its neighbours
            if len(piece) < 2 or not piece[0].isspace() or not piece[1:].isalpha():
                continue
            if not self._clean(piece):
                continue
            texts.append(piece)
            ids.append(i)
        if not ids:
            return np.empty(0, dtype=np.int64)
        for i, piece, enc in zip(ids, texts, self.encode_many(texts), strict=True):
            if enc == [i]:
                good.append(i)
                pieces[i] = piece
        if len(good) < POOL_MIN_SIZE:
            return np.empty(0, dtype=np.int64)
        # the shorter half of the words: whole-word tokens run long (6.7 characters on average
        # for the simulator's tokenizer, 40 k characters for 6000 tokens), natural text is nearer
        # 4.5 characters per token, and a router handles a text prompt character by character
        by_length = sorted(good, key=lambda i: (len(pieces[i]), i))
        pool = np.asarray(sorted(by_length[: max(POOL_MIN_SIZE, len(good) // 2)]), dtype=np.int64)
        pieces[np.asarray(by_length[len(pool) :], dtype=np.int64)] = ""
        # validate on random concatenations (also at the start of a text)
        rng = np.random.default_rng(12345)
        seqs = rng.choice(pool, size=(POOL_VALIDATION_SEQS, POOL_VALIDATION_LEN))
        texts = ["".join(pieces[row].tolist()) for row in seqs]
        for row, text, enc in zip(seqs, texts, self.encode_many(texts), strict=True):
            if not self._clean(text) or enc != row.tolist():
                return np.empty(0, dtype=np.int64)
        self.pieces = pieces
        return pool

    @property
    def exact_by_construction(self) -> bool:
        return self.pool.size > 0

    # -- building ----------------------------------------------------------------------------
    def content_len(self, n: int) -> int:
        """Text tokens to build so the server's count (with added special tokens) is ``n``."""
        return max(1, n - self.extra)

    def from_pool(self, ids: np.ndarray) -> str:
        assert self.pieces is not None
        return "".join(self.pieces[ids].tolist())

    def fallback(self, rng: np.random.Generator, n: int, prefix: str = "") -> tuple[str, list[int]]:
        """decode -> re-encode -> trim/extend until ``prefix + text`` encodes to exactly
        ``len(encode(prefix)) + n`` tokens; returns the suffix text and the full ids."""
        base = len(self.encode(prefix)) if prefix else 0
        ids = rng.choice(self.candidates, size=n).tolist()
        for attempt in range(FALLBACK_MAX_ROUNDS):
            text = self.decode(ids)
            full = prefix + text
            enc = self.encode(full)
            have = len(enc) - base
            if have == n and self._clean(full):
                return text, enc
            if not self._clean(full):
                ids = rng.choice(self.candidates, size=n).tolist()
            elif have > n:
                # trim, and redraw a few tokens at the end: the cut itself may re-tokenize
                # differently, so plain trimming can cycle
                redraw = min(n, 1 + attempt // 2)
                ids = enc[base : base + n - redraw] + rng.choice(self.candidates, size=redraw).tolist()
            else:
                ids = enc[base:] + rng.choice(self.candidates, size=n - have).tolist()
        raise WorkloadError(
            f"Could not build a text prompt that re-tokenizes to exactly {n} tokens with this "
            f"tokenizer ({type(self.tokenizer).__name__}) after {FALLBACK_MAX_ROUNDS} rounds; send "
            "token ids instead (api='generate', or completions_prompt='ids' where the server "
            "accepts them)."
        )


_BUILDERS: weakref.WeakKeyDictionary[Any, dict[bool, TextBuilder]] = weakref.WeakKeyDictionary()


def text_builder(tokenizer: Any, special_tokens: bool = True) -> TextBuilder:
    """The (cached) :class:`TextBuilder` of ``tokenizer``."""
    try:
        per = _BUILDERS.setdefault(tokenizer, {})
    except TypeError:  # not weak-referenceable: no caching
        return TextBuilder(tokenizer, special_tokens=special_tokens)
    if special_tokens not in per:
        per[special_tokens] = TextBuilder(tokenizer, special_tokens=special_tokens)
    return per[special_tokens]
