"""Write a tiny random-weight Llama for real SGLang on a CPU: 2 layers, hidden 128, 4 heads
(2 KV heads), bf16, with the simulator's tokenizer (clusters/models/sim-tiny). Nothing is
downloaded; the weights are seeded, so every machine makes the same model.

Its outputs are gibberish: the real-engine tier measures serving (scheduling, KV transfer,
streaming, the router), not the model. Run by setup.sh with the SGLang environment's Python.

Two choices serve the prefill TP=2 / PP=2 clusters (cpu-tp2, cpu-pp2):
- the output head is its own weight, not tied to the embedding: SGLang 0.5.23's Llama with tied
  embeddings and PP > 1 points the last stage's head at an embedding only the first stage holds
  (``'PPMissingLayer' object has no attribute 'quant_method'`` on the first request);
- the head's weights are drawn wider than the rest (std 0.2, not 0.02), so the next token wins by
  a clear margin (logits spread ~2 instead of ~0.2): greedy outputs of differently split servers
  can then be compared token for token, rounding cannot flip them.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

MAX_POSITIONS = 4096
HEAD_STD = 0.2


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tokenizer", type=Path, required=True, help="folder with tokenizer.json")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    tok_config = json.loads((args.tokenizer / "tokenizer_config.json").read_text())
    vocab = json.loads((args.tokenizer / "tokenizer.json").read_text())["model"]["vocab"]
    special = {tok_config["bos_token"]: "bos", tok_config["eos_token"]: "eos",
               tok_config["pad_token"]: "pad"}
    ids = {role: vocab[token] for token, role in special.items()}
    config = LlamaConfig(
        vocab_size=len(vocab), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=MAX_POSITIONS,
        bos_token_id=ids["bos"], eos_token_id=ids["eos"], pad_token_id=ids["pad"],
        tie_word_embeddings=False, torch_dtype="bfloat16",
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.lm_head.weight.normal_(0.0, HEAD_STD)
    model = model.to(torch.bfloat16)
    model.save_pretrained(args.out, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(args.tokenizer / name, args.out / name)
    cfg = json.loads((args.out / "tokenizer_config.json").read_text())
    cfg["model_max_length"] = MAX_POSITIONS
    (args.out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.out}: tiny Llama, {n / 1e6:.2f} M parameters, vocab {len(vocab)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
