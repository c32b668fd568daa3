"""The worker's tokens: the model's tokenizer for counting prompts, and a pool of output tokens
whose text re-tokenizes to the same ids."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any


class Vocab:
    """Tokenizer for prompt counting plus a pool of output tokens (space-led ASCII words that
    re-encode to themselves, so the concatenated text re-tokenizes to the same ids). A request's
    output is the pool read cyclically from its ``offset``."""

    def __init__(self, tokenizer_json: Path, seed: int) -> None:
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_file(str(tokenizer_json))
        pool: list[int] = []
        for i in range(self.tok.get_vocab_size()):
            s = self.tok.decode([i])
            if (
                len(s) >= 3
                and s[0] == " "
                and s[1:].isascii()
                and s[1:].isalpha()
                and self.tok.encode(s, add_special_tokens=False).ids == [i]
            ):
                pool.append(i)
            if len(pool) >= 512:
                break
        if not pool:  # odd tokenizer: any non-special single-token strings
            special = set(self.tok.get_added_tokens_decoder())
            pool = [i for i in range(self.tok.get_vocab_size()) if i not in special and self.tok.decode([i])][
                :512
            ]
        random.Random(seed).shuffle(pool)
        self.ids = pool
        self.text = [self.tok.decode([i]) for i in pool]
        # JSON-escaped text pieces (ASCII words need no escaping, but stay correct anyway)
        self.jtext = [json.dumps(t)[1:-1].encode() for t in self.text]
        self.jid = [str(i).encode() for i in pool]
        eos = None
        for name in ("<|eos|>", "</s>", "<|endoftext|>", "<eos>"):
            eos = self.tok.token_to_id(name)
            if eos is not None:
                break
        self.eos_id = eos

    def count(self, text: str) -> int:
        """Prompt length as SGLang counts a text prompt: with the tokenizer's special tokens
        (e.g. a BOS its post-processor adds)."""
        return len(self.tok.encode(text, add_special_tokens=True).ids)

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def output_text(self, offset: int, start: int, end: int) -> str:
        """The text of output tokens ``start:end`` of the request whose output starts at
        ``offset``."""
        text, size = self.text, len(self.ids)
        return "".join(text[(offset + i) % size] for i in range(start, end))

    def output_ids(self, offset: int, start: int, end: int) -> list[int]:
        ids = self.ids
        return [ids[(offset + i) % len(ids)] for i in range(start, end)]


def logprob_entries(ids: list[int], first_is_none: bool) -> list[list[Any]]:
    """SGLang's ``[logprob, token_id, None]`` triples with made-up but stable values; the first
    prompt token has no logprob (nothing precedes it)."""
    out: list[list[Any]] = [[round(-0.25 - (t % 17) * 0.125, 4), t, None] for t in ids]
    if first_is_none and out:
        out[0][0] = None
    return out
