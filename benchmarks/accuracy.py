"""Timestamp accuracy: the client's first-token and inter-token times against the simulated
worker's own timestamps (``GET /sim/trace``; both sides use the same monotonic clock), p50/p99,
at 16, 256 and 1024 concurrent streams, each the median of ``--repeats`` runs.

    .venv/bin/python benchmarks/accuracy.py           # figures printed, nothing asserted

Two references, printed side by side:
- vs send (the client's stamping error, the figure the targets apply to): the sim notes when it
  handed each chunk to its socket (``sent_times``, taken just before the write, so the figure
  errs high by the write itself). TTFT error = client ``t_first_token`` - that time for the
  first chunk; ITL error = client gap between two chunks - the sim's gap between sending them.
  Nothing a client can do gets a chunk earlier than it was sent.
- vs emit (end to end): the same against the model's emit time of each chunk's last token. This
  adds the sim's own write latency: with 1000+ streams every decode step's tokens are written
  one after the other (the real server's HTTP layer does the same), shown as "sim send delay".
Requests carry ``rid`` = run tag + index so client records and server traces match one to one;
chunks match by the cumulative token count each carried. The client's loop lag (how late a 2 ms
timer fires in the loop that stamps the chunks, single-process runs) is shown too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
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


def measure(
    sim: Sim, tok: object, concurrency: int, output_len: int, tag: str, waves: int, processes: int = 1
) -> dict:
    w = Workload(
        input_len=64,
        output_len=output_len,
        concurrency=concurrency,
        num_requests=concurrency * waves,
        warmup_requests=0,
        request_timeout_s=600.0,
        client_processes=processes,
    )
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
    err: dict[str, list] = {k: [] for k in ("ttft_sent", "itl_sent", "ttft_emit", "itl_emit", "sim_delay")}
    missing = 0
    for rec in result.records:
        tr = trace.get(rec.rid)
        if not rec.ok or tr is None or len(rec.chunk_tokens) != len(rec.chunk_times):
            missing += 1
            continue
        sent_at = dict(zip(tr["sent_tokens"], tr["sent_times"], strict=True))
        if any(n not in sent_at for n in rec.chunk_tokens):
            missing += 1
            continue
        client = np.asarray(rec.chunk_times, dtype=float)
        tokens = np.asarray(rec.chunk_tokens, dtype=np.int64)
        sent = np.asarray([sent_at[n] for n in rec.chunk_tokens], dtype=float)
        emits = np.asarray(tr["token_times"], dtype=float)[tokens - 1]  # last token of each chunk
        err["ttft_sent"].append(client[0] - sent[0])
        err["itl_sent"].append(np.diff(client) - np.diff(sent))
        err["ttft_emit"].append(client[0] - emits[0])
        err["itl_emit"].append(np.diff(client) - np.diff(emits))
        err["sim_delay"].append(sent - emits)
    out = {
        "concurrency": concurrency,
        "processes": processes,
        "requests": len(result.records),
        "unmatched": missing,
    }
    for k, v in err.items():
        ms = (np.concatenate(v) if k.startswith(("itl", "sim")) else np.asarray(v)) * 1e3
        out[k] = (
            (float(np.percentile(ms, 50)), float(np.percentile(ms, 99))) if ms.size else (math.nan, math.nan)
        )
    out["itl_n"] = sum(len(x) for x in err["itl_sent"])
    out["lag"] = (
        (float(np.percentile(lags, 50)) * 1e3, float(np.percentile(lags, 99)) * 1e3)
        if lags
        else (math.nan, math.nan)
    )
    return out


FIGURES = [
    ("ttft_sent", "TTFT err vs send"),
    ("itl_sent", "ITL err vs send"),
    ("ttft_emit", "TTFT vs emit"),
    ("itl_emit", "ITL vs emit"),
    ("sim_delay", "sim send delay"),
    ("lag", "client loop lag"),
]
TARGETS = {16: 1.0, 1024: 5.0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency", type=int, nargs="+", default=[16, 256, 1024])
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument(
        "--waves",
        type=int,
        default=3,
        help="requests per stream (the sim's trace keeps the last 4096 requests)",
    )
    ap.add_argument(
        "--processes",
        type=int,
        nargs="*",
        default=[2],
        help="also measure the largest concurrency with these many client processes",
    )
    ap.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="runs per configuration; the table shows the median of each figure",
    )
    ap.add_argument(
        "--step-ms",
        type=float,
        default=30.0,
        help="the sim's decode step (default 30 ms: 1024 streams = 34k tokens/s)",
    )
    ap.add_argument(
        "--pin",
        action="store_true",
        help="run the sim on the last CPU and the client on the others (as if on "
        "separate hosts: the client's wake-ups do not queue behind the sim's writes)",
    )
    args = ap.parse_args()
    tok = load_tokenizer(SIM_TINY)
    rows = []
    sim_cpus = None
    if args.pin:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            raise SystemExit("--pin needs at least 2 CPUs")
        sim_cpus = {cpus[-1]}
        os.sched_setaffinity(0, set(cpus[:-1]))
    with Sim(*zero_compute_args(args.step_ms / 1000.0), cpus=sim_cpus) as sim:
        print(
            f"sim worker {sim.url}: decode step {args.step_ms:g} ms, {args.output_len} output "
            f"tokens per request, up to {args.waves} requests per stream",
            flush=True,
        )
        runs = [(c, 1) for c in args.concurrency]
        runs += [(max(args.concurrency), p) for p in args.processes if p > 1]
        for c, procs in runs:
            reps = []
            for k in range(args.repeats):
                tag = f"acc{c}x{procs}r{k}-{int(time.time())}"
                r = measure(sim, tok, c, args.output_len, tag, max(1, min(args.waves, 4000 // c)), procs)
                reps.append(r)
                print(
                    f"  c={c} x{procs} proc run {k + 1}: "
                    + ", ".join(f"{name} {r[key][0]:.3f}/{r[key][1]:.3f}" for key, name in FIGURES)
                    + f" ms (p50/p99); {r['itl_n']} gaps, {r['unmatched']} unmatched",
                    flush=True,
                )
            med = {
                key: tuple(float(np.median([r[key][i] for r in reps])) for i in (0, 1)) for key, _ in FIGURES
            }
            rows.append({"concurrency": c, "processes": procs, **med})
    print()
    print(
        f"median of {args.repeats} runs, p50 / p99 in ms; 'vs send': client stamp minus the "
        "moment the sim handed that chunk to its socket (the client's stamping error); "
        "'vs emit': minus the model's emit time of the chunk's last token (end to end)"
    )
    print("| streams | client processes | " + " | ".join(n for _, n in FIGURES) + " | target (p99 vs send) |")
    print("| ---: | ---: | " + " | ".join("---:" for _ in FIGURES) + " | --- |")
    for r in rows:
        t = TARGETS.get(r["concurrency"])
        verdict = (
            "—"
            if t is None
            else (f"≤ {t:g}: " + ("met" if max(r["ttft_sent"][1], r["itl_sent"][1]) <= t else "missed"))
        )
        print(
            f"| {r['concurrency']} | {r['processes']} | "
            + " | ".join(f"{r[key][0]:.2f} / {r[key][1]:.2f}" for key, _ in FIGURES)
            + f" | {verdict} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
