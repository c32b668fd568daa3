"""Timestamp accuracy: the client's first-token and inter-token times minus the simulated worker's
own emit timestamps (``GET /sim/trace``; both sides use the same monotonic clock), p50/p99, at
16, 256 and 1024 concurrent streams.

    .venv/bin/python benchmarks/accuracy.py           # figures printed, nothing asserted

- TTFT error = client ``t_first_token`` - the sim's emit time of token 1 (how late the client
  stamps the first token; this is also exactly how much the client's TTFT overstates the server's).
- ITL error = client gap between two output chunks - the sim's gap between the emits of the last
  tokens of those chunks.
Both include the loopback/HTTP delivery and the sim's own write latency, not only the client's.
Requests carry ``rid`` = run tag + index so client records and server traces match one to one.
The client's own share is shown apart as its event loop's lag (how late a 2 ms timer fires in
the loop that stamps the chunks, single-process runs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import SIM_TINY, Sim, zero_compute_args  # noqa: E402

from pytest_pd.workload import (  # noqa: E402
    RunResult,
    Workload,
    build_prompts,
    load_tokenizer,
    run_workload,
    run_workload_sync,
)
from pytest_pd.workload.runner import run_async  # noqa: E402


def measure(sim: Sim, tok: object, concurrency: int, output_len: int, tag: str, waves: int,
            processes: int = 1) -> dict:
    w = Workload(input_len=64, output_len=output_len, concurrency=concurrency,
                 num_requests=concurrency * waves, warmup_requests=0, request_timeout_s=600.0,
                 client_processes=processes)
    prompts = build_prompts(tok, w)
    lags: list[float] = []
    if processes == 1:
        async def go() -> RunResult:
            async def probe() -> None:  # how late the client's loop runs a 2 ms timer
                while True:
                    t = time.perf_counter()
                    await asyncio.sleep(0.002)
                    lags.append(time.perf_counter() - t - 0.002)

            task = asyncio.create_task(probe())
            try:
                return await run_workload(sim.url, w, prompts, rid_prefix=tag)
            finally:
                task.cancel()

        result = run_async(go)
    else:
        result = run_workload_sync(sim.url, w, prompts, rid_prefix=tag)
    with urllib.request.urlopen(sim.url + "/sim/trace", timeout=30) as r:
        trace = {t["rid"]: t for t in json.loads(r.read())["requests"]}
    ttft_err, itl_err, missing = [], [], 0
    for rec in result.records:
        tr = trace.get(rec.rid)
        if not rec.ok or tr is None or len(rec.chunk_tokens) != len(rec.chunk_times):
            missing += 1
            continue
        emits = np.asarray(tr["token_times"], dtype=float)
        client = np.asarray(rec.chunk_times, dtype=float)
        last_tok = np.asarray(rec.chunk_tokens, dtype=np.int64) - 1
        server = emits[last_tok]
        ttft_err.append(rec.t_first_token - emits[0])
        itl_err.append(np.diff(client) - np.diff(server))
    ttft = np.asarray(ttft_err) * 1e3
    itl = np.concatenate(itl_err) * 1e3 if itl_err else np.empty(0)
    return {"concurrency": concurrency, "processes": processes,
            "requests": len(result.records), "unmatched": missing,
            "ttft_p50": float(np.percentile(ttft, 50)), "ttft_p99": float(np.percentile(ttft, 99)),
            "itl_p50": float(np.percentile(itl, 50)), "itl_p99": float(np.percentile(itl, 99)),
            "itl_abs_p99": float(np.percentile(np.abs(itl), 99)), "itl_n": int(itl.size),
            "lag_p50": float(np.percentile(lags, 50)) * 1e3 if lags else math.nan,
            "lag_p99": float(np.percentile(lags, 99)) * 1e3 if lags else math.nan}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency", type=int, nargs="+", default=[16, 256, 1024])
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument("--waves", type=int, default=3,
                    help="requests per stream (the sim's trace keeps the last 4096 requests)")
    ap.add_argument("--processes", type=int, default=2,
                    help="also measure the largest concurrency with this many client processes")
    ap.add_argument("--step-ms", type=float, default=30.0,
                    help="the sim's decode step (default 30 ms: 1024 streams = 34k tokens/s)")
    args = ap.parse_args()
    tok = load_tokenizer(SIM_TINY)
    rows = []
    with Sim(*zero_compute_args(args.step_ms / 1000.0)) as sim:
        print(f"sim worker {sim.url}: decode step {args.step_ms:g} ms, {args.output_len} output "
              f"tokens per request, up to {args.waves} requests per stream", flush=True)
        runs = [(c, 1) for c in args.concurrency]
        if args.processes > 1:
            runs.append((max(args.concurrency), args.processes))
        for c, procs in runs:
            tag = f"acc{c}x{procs}-{int(time.time())}"
            r = measure(sim, tok, c, args.output_len, tag, max(1, min(args.waves, 4000 // c)),
                        procs)
            rows.append(r)
            print(f"  c={c} x{procs} client process(es): TTFT error p50 {r['ttft_p50']:.3f} ms, "
                  f"p99 {r['ttft_p99']:.3f} ms; ITL error p50 {r['itl_p50']:.3f} ms, "
                  f"p99 {r['itl_p99']:.3f} ms (|ITL error| p99 {r['itl_abs_p99']:.3f} ms, "
                  f"{r['itl_n']} gaps, {r['unmatched']} unmatched; client loop lag p50 "
                  f"{r['lag_p50']:.3f} ms, p99 {r['lag_p99']:.3f} ms)", flush=True)
    targets = {16: 1.0, 1024: 5.0}
    print()
    print("| streams | client processes | TTFT err p50 (ms) | TTFT err p99 (ms) "
          "| ITL err p50 (ms) | ITL err p99 (ms) | client loop lag p99 (ms) | target p99 |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        t = targets.get(r["concurrency"])
        print(f"| {r['concurrency']} | {r['processes']} | {r['ttft_p50']:.3f} | "
              f"{r['ttft_p99']:.3f} | {r['itl_p50']:.3f} | {r['itl_p99']:.3f} | "
              f"{r['lag_p99']:.3f} | "
              f"{f'≤ {t:g}' if t else '—'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
