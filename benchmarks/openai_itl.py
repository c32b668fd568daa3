"""Token-true ITL over the OpenAI API: the seed workload (6000 in / 1000 out, 16 concurrent, 32
requests) on ``/v1/completions`` against a simulated worker whose stream merges tokens into chunks
(SGLang's ``--stream-interval``), ITL and TPOT as the client computes them with each way of
counting a chunk's tokens, against the worker's own per-token emit times (``GET /sim/trace``).

    .venv/bin/python benchmarks/openai_itl.py                  # figures printed, nothing asserted

Per stream interval, two runs:
- continuous usage (the sim honours ``stream_options.continuous_usage_stats``, as SGLang does and
  smg forwards it): ``server per chunk``; and, from the same records with the counts removed,
  ``one per chunk`` (what the client computed before it asked for per-chunk usage);
- no per-chunk usage (``--sim-ignore-continuous-usage``: what sglang-router 0.3.2 leaves, since it
  drops the option): ``tokenizer`` (the run's tokenizer counts each chunk's text after the run).
Server truth: ITL = the pooled gaps between a request's successive token emit times; TPOT = per
request (last emit - first emit) / (tokens - 1), averaged. Times in model ms (wall x speedup).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import SIM_TINY, Sim  # noqa: E402

from pytest_pd.workload import Workload, build_prompts, load_tokenizer, run_workload_sync  # noqa: E402
from pytest_pd.workload.chunk_count import count_chunk_tokens  # noqa: E402
from pytest_pd.workload.metrics import summarize  # noqa: E402
from pytest_pd.workload.result import RunResult  # noqa: E402


def server_truth(sim: Sim, rids: set[str]) -> tuple[float, float, float]:
    """Mean ITL (s), mean TPOT (s) and tokens per chunk from the sim's own trace."""
    with urllib.request.urlopen(sim.url + "/sim/trace", timeout=30) as r:
        trace = [t for t in json.loads(r.read())["requests"] if t["rid"] in rids]
    gaps = np.concatenate([np.diff(np.asarray(t["token_times"])) for t in trace])
    tpots = [(t["token_times"][-1] - t["token_times"][0]) / (len(t["token_times"]) - 1) for t in trace]
    chunks = sum(len(t["sent_times"]) for t in trace)
    tokens = sum(t["completion_tokens"] for t in trace)
    return float(gaps.mean()), float(np.mean(tpots)), tokens / chunks


def one_per_chunk(result: RunResult) -> RunResult:
    """The same run with the per-chunk counts forgotten (the client before this change)."""
    for r in result.records:
        r.chunk_tokens = []
        r.token_source = "one per chunk"
    return result


def run(sim: Sim, tok: object, w: Workload, tag: str) -> tuple[RunResult, set[str]]:
    prompts = build_prompts(tok, w)
    result = run_workload_sync(sim.url, w, prompts, rid_prefix=tag)
    return result, {r.rid for r in result.records if r.rid}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stream-interval", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--speedup", type=float, default=10.0)
    ap.add_argument("--input-len", type=int, default=6000)
    ap.add_argument("--output-len", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--requests", type=int, default=32)
    args = ap.parse_args()
    tok = load_tokenizer(SIM_TINY)
    w = Workload(
        input_len=args.input_len,
        output_len=args.output_len,
        concurrency=args.concurrency,
        num_requests=args.requests,
        api="completions",
        request_timeout_s=600.0,
    )
    ms = 1e3 * args.speedup
    rows = []
    for k in args.stream_interval:
        base = ["--tp-size", "8", "--sim-speedup", f"{args.speedup:g}", "--stream-interval", str(k)]
        for ignore in (False, True):
            extra = ["--sim-ignore-continuous-usage", "true"] if ignore else []
            with Sim(*base, *extra) as sim:
                tag = f"oai{k}{'t' if ignore else 's'}-{int(time.time())}"
                result, rids = run(sim, tok, w, tag)
                itl, tpot, per_chunk = server_truth(sim, rids)
            if ignore:
                variants = [("one per chunk", summarize(result))]
                count_chunk_tokens(result.records, tok)
                variants.append(("tokenizer", summarize(result)))
            else:
                variants = [("server per chunk", summarize(result))]
                variants.append(("one per chunk", summarize(one_per_chunk(result))))
            for how, s in variants:
                rows.append((k, per_chunk, how, s, itl * ms, tpot * ms, ignore))
                print(
                    f"  interval {k} ({'no per-chunk usage' if ignore else 'continuous usage'}), "
                    f"{how}: ITL {s.mean_itl_ms * args.speedup:.3f} ms vs server {itl * ms:.3f}, "
                    f"TPOT {s.mean_tpot_ms * args.speedup:.3f} vs {tpot * ms:.3f}; "
                    f"source {s.token_count_source!r}, {s.completed} ok, {s.failed} failed",
                    flush=True,
                )
    print()
    print(f"{w.id} on /v1/completions, simulated x{args.speedup:g}; model ms; error = client / server - 1")
    print(
        "| stream interval | tokens per chunk | per-chunk usage | counted by | token_count_source "
        "| ITL client | ITL server | ITL error | TPOT client | TPOT server | TPOT error |"
    )
    print("| ---: | ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for k, per_chunk, how, s, itl, tpot, ignore in rows:
        c_itl, c_tpot = s.mean_itl_ms * args.speedup, s.mean_tpot_ms * args.speedup
        print(
            f"| {k} | {per_chunk:.2f} | {'dropped' if ignore else 'sent'} | {how} | {s.token_count_source} "
            f"| {c_itl:.3f} | {itl:.3f} | {c_itl / itl - 1:+.2%} | {c_tpot:.3f} | {tpot:.3f} "
            f"| {c_tpot / tpot - 1:+.2%} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
