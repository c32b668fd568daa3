"""Client overhead: CPU per streamed token, and the most tokens/s and concurrent streams the client
sustains without errors on this machine, against a simulated worker with zero compute time.

    .venv/bin/python benchmarks/client_overhead.py            # figures printed, nothing asserted

The worker (``python -m pytest_pd.sim``, unified mode, loopback) has no prefill/KV cost and a fixed
decode step, so it offers ``concurrency / step`` tokens/s whatever the batch. Each client design
runs in its own process (and its children); its CPU seconds are those of the measured requests
(``process_time()``, all client processes), the tokens the server's counts. The cost phase runs
every design ``--repeats`` times, interleaved; each ratio pairs runs of the same round and the
median is reported.

Designs compared in the same run, on the same server:
- ``pytest-pd``: this project's load generator (uvloop, one orjson body per request, its own
  ``asyncio.Protocol`` on httptools' parser: every read stamped and its body decoded in the
  ``data_received`` callback, orjson of each event's ``meta_info``), in 1 and in N client
  processes.
- ``bench_serving-style``: a minimal re-implementation, written for this comparison from the
  published description of SGLang's ``bench_serving.py`` client (SGLang itself is not installed
  here: it needs torch/CUDA): default asyncio loop, one aiohttp ClientSession per request, ``json=``
  body, ``async for line in response.content`` (line iteration), ``str`` decode + ``json.loads``
  of every chunk, per-token ITL list built in Python, a semaphore for the concurrency cap.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import SIM_TINY, Sim, cpu_times, zero_compute_args  # noqa: E402

# ---------------------------------------------------------------------------------------------
# Worker side: one design, one configuration; prints one JSON line
# ---------------------------------------------------------------------------------------------


def worker_ours(
    url: str, concurrency: int, requests: int, input_len: int, output_len: int, processes: int
) -> dict:
    from pytest_pd.workload import Workload, build_prompts, load_tokenizer, run_workload_sync

    w = Workload(
        input_len=input_len,
        output_len=output_len,
        concurrency=concurrency,
        num_requests=requests,
        warmup_requests=0,
        client_processes=processes,
        request_timeout_s=600.0,
    )
    prompts = build_prompts(load_tokenizer(SIM_TINY), w)
    cpu0, t0 = cpu_times(), time.perf_counter()
    result = run_workload_sync(url, w, prompts)
    wall, cpu = time.perf_counter() - t0, cpu_times() - cpu0
    ok = [r for r in result.records if r.ok]
    return {
        "cpu_s": result.client_cpu_s,
        "cpu_total_s": cpu,
        "wall_s": wall,
        "run_s": result.duration,
        "tokens": sum(r.completion_tokens or 0 for r in ok),
        "chunks": sum(len(r.chunk_times) for r in ok),
        "completed": len(ok),
        "errors": len(result.records) - len(ok),
        "mismatches": sum(r.completion_tokens != r.expected_output_len for r in ok),
    }


async def _baseline(url: str, concurrency: int, prompts: list[list[int]], output_len: int) -> dict:
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=6 * 60 * 60)
    sem = asyncio.Semaphore(concurrency)
    outs: list[dict] = []
    chunks = [0]

    async def one(ids: list[int]) -> None:
        async with sem:
            payload = {
                "input_ids": ids,
                "sampling_params": {"temperature": 0.0, "max_new_tokens": output_len, "ignore_eos": True},
                "stream": True,
            }
            out = {"ttft": 0.0, "itl": [], "output_len": 0, "success": False, "latency": 0.0}
            st = time.perf_counter()
            recent = st
            last_len = 0
            async with aiohttp.ClientSession(timeout=timeout, read_bufsize=10 * 1024**2) as session:
                try:
                    async with session.post(url + "/generate", json=payload) as response:
                        if response.status == 200:
                            async for chunk_bytes in response.content:
                                chunk_bytes = chunk_bytes.strip()
                                if not chunk_bytes:
                                    continue
                                chunk = chunk_bytes.decode("utf-8")
                                if chunk.startswith("data: "):
                                    chunk = chunk[len("data: ") :]
                                latency = time.perf_counter() - st
                                if chunk == "[DONE]":
                                    continue
                                data = json.loads(chunk)
                                if data.get("text"):
                                    chunks[0] += 1  # harness bookkeeping, not the design's
                                    ts = time.perf_counter()
                                    n = data["meta_info"]["completion_tokens"]
                                    if out["ttft"] == 0.0:
                                        out["ttft"] = ts - st
                                    else:
                                        new = n - last_len
                                        if new == 0:
                                            continue
                                        out["itl"].extend([(ts - recent) / new] * new)
                                    recent = ts
                                    last_len = n
                                    out["output_len"] = n
                            out["success"] = True
                            out["latency"] = latency
                except Exception:  # noqa: BLE001 - counted as a failure, like bench_serving
                    out["success"] = False
            outs.append(out)

    await asyncio.gather(*(one(p) for p in prompts))
    ok = [o for o in outs if o["success"]]
    return {
        "tokens": sum(o["output_len"] for o in ok),
        "completed": len(ok),
        "errors": len(outs) - len(ok),
        "chunks": chunks[0],
        "mismatches": sum(o["output_len"] != output_len for o in ok),
    }


def worker_baseline(url: str, concurrency: int, requests: int, input_len: int, output_len: int) -> dict:
    from pytest_pd.workload import Workload, build_prompts, load_tokenizer

    w = Workload(
        input_len=input_len,
        output_len=output_len,
        concurrency=concurrency,
        num_requests=requests,
        warmup_requests=0,
    )
    prompts = [[int(t) for t in p.token_ids] for p in build_prompts(load_tokenizer(SIM_TINY), w)]
    cpu0, t0 = time.process_time(), time.perf_counter()
    out = asyncio.run(_baseline(url, concurrency, prompts, output_len))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    out.update(cpu_s=cpu, cpu_total_s=cpu, wall_s=wall, run_s=wall)
    return out


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------


def run_worker(design: str, url: str, args: argparse.Namespace, concurrency: int, processes: int) -> dict:
    argv = [
        sys.executable,
        __file__,
        "--worker",
        design,
        "--url",
        url,
        "--concurrency",
        str(concurrency),
        "--requests",
        str(args.requests_per_stream * concurrency),
        "--input-len",
        str(args.input_len),
        "--output-len",
        str(args.output_len),
        "--processes",
        str(processes),
    ]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise SystemExit(f"{design} worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", choices=["ours", "baseline"], help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=[256],
        help="streams for the cost phase (default 256: the sim keeps up, one token per chunk)",
    )
    ap.add_argument(
        "--capacity",
        type=int,
        nargs="*",
        default=[1024, 2048],
        help="streams for the capacity phase (default 1024 2048)",
    )
    ap.add_argument(
        "--capacity-step-ms",
        type=float,
        default=10.0,
        help="the sim's decode step in the capacity phase (default 10 ms)",
    )
    ap.add_argument("--requests", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument(
        "--requests-per-stream", type=int, default=2, help="requests per concurrent stream (default 2)"
    )
    ap.add_argument("--input-len", type=int, default=64)
    ap.add_argument("--output-len", type=int, default=256)
    ap.add_argument(
        "--processes", type=int, default=2, help="client processes of the multi-process run (default 2)"
    )
    ap.add_argument(
        "--step-ms",
        type=float,
        default=20.0,
        help="the sim's decode step: offered tokens/s = concurrency / step",
    )
    ap.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="cost phase: runs of every design, interleaved; ratios are medians (default 3)",
    )
    args = ap.parse_args()

    if args.worker == "ours":
        print(
            json.dumps(
                worker_ours(
                    args.url,
                    args.concurrency[0],
                    args.requests,
                    args.input_len,
                    args.output_len,
                    args.processes,
                )
            )
        )
        return 0
    if args.worker == "baseline":
        print(
            json.dumps(
                worker_baseline(args.url, args.concurrency[0], args.requests, args.input_len, args.output_len)
            )
        )
        return 0

    rows = []
    phases = [("cost", args.step_ms, args.concurrency)]
    if args.capacity:
        phases.append(("capacity", args.capacity_step_ms, args.capacity))
    for phase, step_ms, streams in phases:
        with Sim(*zero_compute_args(step_ms / 1000.0)) as sim:
            print(
                f"{phase} phase: sim worker {sim.url}, decode step {step_ms:g} ms, no "
                f"prefill/KV cost; {args.input_len} in / {args.output_len} out, "
                f"{args.requests_per_stream} requests per stream",
                flush=True,
            )
            designs = (
                [("ours", 1)] + ([("ours", args.processes)] if args.processes > 1 else []) + [("baseline", 1)]
            )
            for c in streams:
                for rep in range(args.repeats if phase == "cost" else 1):
                    for design, procs in designs:
                        s0 = sim.cpu_s()
                        r = run_worker(design, sim.url, args, c, procs)
                        r["sim_cpu_s"] = sim.cpu_s() - s0
                        name = ("pytest-pd" if design == "ours" else "bench_serving-style") + (
                            f" x{procs} proc" if design == "ours" else " x1 proc"
                        )
                        r.update(design=name, concurrency=c, phase=phase, step_ms=step_ms, rep=rep)
                        rows.append(r)
                        print(_fmt_row(r), flush=True)
                        time.sleep(1.0)
    print()
    print(
        "| phase (step) | design | streams | completed | errors | tokens/s | chunks/s "
        "| tokens/chunk | client CPU s | CPU µs/token | CPU µs/chunk | sim CPU s |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        ch = max(r["chunks"], 1)
        print(
            f"| {r['phase']} ({r['step_ms']:g} ms) | {r['design']} | {r['concurrency']} | "
            f"{r['completed']} | {r['errors']} | {r['tokens'] / r['run_s']:,.0f} | "
            f"{r['chunks'] / r['run_s']:,.0f} | {r['tokens'] / ch:.2f} | {r['cpu_s']:.2f} | "
            f"{1e6 * r['cpu_s'] / max(r['tokens'], 1):.1f} | {1e6 * r['cpu_s'] / ch:.1f} | "
            f"{r['sim_cpu_s']:.2f} |"
        )
    print()
    for phase, c in sorted({(r["phase"], r["concurrency"]) for r in rows}):
        same = [r for r in rows if r["concurrency"] == c and r["phase"] == phase]
        for name in sorted({r["design"] for r in same if r["design"].startswith("pytest-pd")}):
            ratios = []
            for rep in sorted({r["rep"] for r in same}):
                base = next(r for r in same if r["rep"] == rep and r["design"].startswith("bench"))
                ours = next(r for r in same if r["rep"] == rep and r["design"] == name)
                ratios.append(_per_token(ours) / _per_token(base))
            print(
                f"{phase}, {c} streams: {name} uses {statistics.median(ratios):.2f}x the CPU per "
                f"token of the bench_serving-style client (median of {len(ratios)} interleaved "
                f"runs: {', '.join(f'{x:.2f}' for x in ratios)}; target <= 0.50)"
            )
    ok = [r for r in rows if r["errors"] == 0 and r["design"].startswith("pytest-pd")]
    if ok:
        best = max(ok, key=lambda r: r["tokens"] / r["run_s"])
        print(
            f"most tokens/s without errors: {best['tokens'] / best['run_s']:,.0f} "
            f"({best['design']}, {best['concurrency']} streams; target >= 50,000)"
        )
        print(f"most concurrent streams without errors: {max(r['concurrency'] for r in ok)} (target >= 1024)")
    return 0


def _per_token(r: dict) -> float:
    return r["cpu_s"] / max(r["tokens"], 1)


def _fmt_row(r: dict) -> str:
    return (
        f"  {r['design']:<28} c={r['concurrency']:<5} completed={r['completed']:<5} "
        f"errors={r['errors']:<3} mismatches={r['mismatches']:<3} "
        f"tok/s={r['tokens'] / r['run_s']:>9,.0f} client_cpu={r['cpu_s']:6.2f}s "
        f"({1e6 * r['cpu_s'] / max(r['tokens'], 1):5.1f} µs/token) "
        f"sim_cpu={r['sim_cpu_s']:6.2f}s wall={r['wall_s']:.1f}s"
    )


if __name__ == "__main__":
    raise SystemExit(main())
