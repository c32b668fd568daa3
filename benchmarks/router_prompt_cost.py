"""What a prompt's form costs the router: the seed's 6000-token prompts sent through the real
sglang-router (PD mode, its default cache-aware policy) to simulated workers that answer almost at
once, as SGLang token ids on ``/generate`` and as exact-length text on ``/v1/completions``. Per
form: characters per prompt, the router's CPU time per request (from /proc: user + system of the
router process) and the mean TTFT the client saw, one request at a time and 16 at once.

    .venv/bin/python benchmarks/router_prompt_cost.py [--requests 64]   # a table; nothing asserted

The router's cache-aware policy matches each text prompt against a tree of earlier prompts,
character by character; the cost grows with the characters sent, which the text builder keeps near
natural text's density (the shorter half of the tokenizer's whole-word tokens).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_pd.workload import Workload, build_prompts, load_tokenizer, run_workload_sync, summarize  # noqa: E402
from tests.helpers import SIM_MODEL, start_pd  # noqa: E402

INPUT_LEN = 6000


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (children not included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=64)
    args = ap.parse_args()
    tok = load_tokenizer(SIM_MODEL)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        pd = start_pd(Path(tmp), speedup=1000.0)
        router_pid = next(p.p.pid for p in pd.procs if p.name == "router")
        try:
            for api in ("generate", "completions"):
                for concurrency in (1, 16):
                    w = Workload(
                        input_len=INPUT_LEN,
                        output_len=2,
                        concurrency=concurrency,
                        num_requests=args.requests,
                        warmup_requests=1,
                        api=api,
                        seed=concurrency,
                    )
                    prompts = build_prompts(tok, w)
                    chars = np.mean([len(p.text) for p in prompts]) if api != "generate" else float("nan")
                    before = cpu_s(router_pid)
                    result = run_workload_sync(pd.router, w, prompts, model="sim-tiny")
                    used = cpu_s(router_pid) - before
                    s = summarize(result)
                    assert s.completed == args.requests, result.records[0].error
                    rows.append((api, concurrency, chars, 1000 * used / (args.requests + 1), s.mean_ttft_ms))
        finally:
            pd.stop()
    print(f"{INPUT_LEN}-token prompts through sglang-router (PD, cache-aware), {args.requests} requests each")
    head = ("concurrency", "chars/prompt", "router CPU ms/req", "mean TTFT ms")
    print(f"{'api':<12} {head[0]:>11} {head[1]:>13} {head[2]:>18} {head[3]:>13}")
    for api, c, chars, cpu, ttft in rows:
        shown = "ids" if np.isnan(chars) else f"{chars:.0f}"
        print(f"{api:<12} {c:>11} {shown:>13} {cpu:>18.2f} {ttft:>13.1f}")


if __name__ == "__main__":
    main()
