"""Build the small byte-level BPE tokenizer shipped in clusters/models/sim-tiny.

The simulated clusters need a real tokenizer that loads offline. This script trains one on
text that every Python installation has (the standard library's own sources), so it can be
rebuilt anywhere without a download:  python tools/make_sim_tokenizer.py
"""

from __future__ import annotations

import json
import sys
import sysconfig
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

OUT = Path(__file__).resolve().parent.parent / "clusters" / "models" / "sim-tiny"
VOCAB_SIZE = 8192
SPECIALS = ["<|bos|>", "<|eos|>", "<|pad|>"]


def corpus() -> list[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(stdlib.glob("*.py"))[:200]
    return [f.read_text(encoding="utf-8", errors="replace") for f in files]


def main() -> int:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer)
    OUT.mkdir(parents=True, exist_ok=True)
    tok.save(str(OUT / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|bos|>",
        "eos_token": "<|eos|>",
        "pad_token": "<|pad|>",
        "model_max_length": 65536,
    }
    (OUT / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    model_config = {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": tok.get_vocab_size(),
        "max_position_embeddings": 65536,
        "eos_token_id": tok.token_to_id("<|eos|>"),
        "bos_token_id": tok.token_to_id("<|bos|>"),
    }
    (OUT / "config.json").write_text(json.dumps(model_config, indent=2) + "\n")
    print(f"wrote {OUT} (vocab {tok.get_vocab_size()})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
