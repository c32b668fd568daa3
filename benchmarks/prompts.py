"""Prompt building speed: 10 000 prompts x 6000 tokens with exact lengths, with the cluster's
tokenizer (the simulated model's byte-level BPE by default).

    .venv/bin/python benchmarks/prompts.py           # figures printed, nothing asserted

- token ids (``/generate``): exact by construction (the server counts the ids it gets);
- text (``/v1/completions`` through the router): exact-length text from the tokenizer's validated
  word-piece pool, re-encoded for verification (a seeded sample above 4M tokens, as
  ``build_prompts`` does by default), and, separately, re-encoding *every* prompt.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_pd.workload import Workload, build_prompts, load_tokenizer  # noqa: E402
from pytest_pd.workload.prompts import _PROMPT_CACHE, verify_text_prompts  # noqa: E402
from pytest_pd.workload.text import text_builder  # noqa: E402

SIM_TINY = Path(__file__).resolve().parents[1] / "clusters" / "models" / "sim-tiny"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer", default=str(SIM_TINY))
    ap.add_argument("--number", type=int, default=10_000)
    ap.add_argument("--input-length", type=int, default=6000)
    ap.add_argument("--skip-full-verify", action="store_true")
    args = ap.parse_args()

    t = time.perf_counter()
    tok = load_tokenizer(args.tokenizer)
    print(f"tokenizer {args.tokenizer}: loaded in {time.perf_counter() - t:.2f} s")
    n, length = args.number, args.input_length
    rows = []
    for api in ("generate", "completions"):
        w = Workload(input_len=length, output_len=1000, num_requests=n, api=api)
        _PROMPT_CACHE.clear()
        t = time.perf_counter()
        prompts = build_prompts(tok, w)
        dt = time.perf_counter() - t
        assert len(prompts) == n and all(len(p) == length for p in prompts)
        kind = "token ids" if api == "generate" else "text (pool + sampled re-encode)"
        rows.append((kind, dt))
        print(f"{kind}: {n} x {length} tokens in {dt:.2f} s", flush=True)
        if api == "completions":
            tb = text_builder(tok)
            print(
                f"  word-piece pool: {tb.pool.size} tokens, exact by construction: {tb.exact_by_construction}"
            )
            if not args.skip_full_verify:
                t = time.perf_counter()
                checked = verify_text_prompts(tb, prompts, max_tokens=10**12)
                dv = time.perf_counter() - t
                rows.append(("re-encode all text prompts (extra)", dv))
                print(
                    f"  re-encoding all {checked} texts: {dv:.2f} s "
                    f"({checked * length / dv / 1e6:.2f} M tokens/s)",
                    flush=True,
                )
        t = time.perf_counter()
        build_prompts(tok, w)
        print(f"  cached rebuild: {time.perf_counter() - t:.4f} s")
    print()
    print("| prompts | time (s) | target |")
    print("| --- | ---: | ---: |")
    for kind, dt in rows:
        print(f"| {kind} | {dt:.2f} | {'≤ 30' if 'extra' not in kind else '—'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
