"""History at scale: two years of nightly results files, read today's way and through the index.

Builds a synthetic results store in a temporary folder: ``--nights`` (730) × ``--clusters`` (3)
× ``--workloads`` (2) files, each a copy of a real results file (tests/data/results, the seed
workload on sim-tp8) with its own cluster, workload, start time, session and metrics, and a
per-request block (``requests``: gzip + base64 of ``--requests`` records with a streamed chunk
per output token each, as real files hold: about 350 kB for the seed workload). Then, each in a
fresh child process (its time, the growth of its peak RSS over the imports, and in a second
child the peak of Python allocations under tracemalloc):

    a  results.find_runs for one cluster × workload     what every test does today
    a* iter_results + summarize of every file            what a history of every series costs today
    b  ResultsIndex.sync() on a folder without an index  the cold build
    c  ResultsIndex.sync() with nothing new              every later session (and its SQL statements)
    d  ResultsIndex.runs() for one series, for all

    .venv/bin/python benchmarks/history_scale.py [--nights 730 --clusters 3 --workloads 2]

Prints a table; nothing is asserted. About 2–3 minutes on a 2-core machine with the defaults.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SOURCE = REPO / "tests" / "data" / "results" / "20261201T233938Z-sim-tp8-in6000-out1000-c16-n32.json"
CLUSTERS = ["h20-pp2", "h20-tp8", "h20-2p1d", "h20-2p2d", "h20-tp4"]
WORKLOADS = [(6000, 1000, 16, 32), (2000, 200, 8, 64), (1000, 100, 4, 16)]
DAY = 86400.0
START = 1_767_225_600.0  # 2026-01-01


def requests_block(rng: random.Random, n: int, chunks: int, workload: dict) -> dict:
    """A per-request block like the client stores: n records with chunk times and token counts."""
    records = []
    for i in range(n):
        t0 = 29143.0 + rng.random()
        first = t0 + rng.uniform(0.2, 2.0)
        times = [first + j * rng.uniform(0.004, 0.03) for j in range(chunks)]
        records.append(
            {"index": i, "prompt_len": workload["input_len"], "expected_output_len": workload["output_len"],
             "t_queued": t0, "t_start": t0 + 0.001, "t_first_token": first, "t_end": times[-1],
             "chunk_times": times, "chunk_tokens": list(range(1, chunks + 1)),
             "prompt_tokens": workload["input_len"], "completion_tokens": workload["output_len"],
             "error_kind": None, "error": "", "status": 200, "cached_tokens": 0, "rid": None}
        )  # fmt: skip
    run = {"workload": workload, "records": records, "started": 29143.0, "finished": 29150.0,
           "base_url": "http://127.0.0.1:38100", "warmup": 0, "model": None, "not_sent": 0}  # fmt: skip
    raw = json.dumps(run, separators=(",", ":")).encode()
    return {
        "encoding": "gzip+base64+json",
        "count": n,
        "data": base64.b64encode(gzip.compress(raw, 6)).decode(),
    }


def build(folder: Path, nights: int, clusters: int, workloads: int, n_requests: int, chunks: int) -> int:
    """Write the synthetic store; returns its size in bytes."""
    from pytest_pd.results import result_filename

    base = json.loads(SOURCE.read_text())
    rng = random.Random(0)
    blocks = {}
    for w in range(workloads):
        inp, out, conc, num = WORKLOADS[w]
        wl = {
            **base["workload"],
            "input_len": inp,
            "output_len": out,
            "concurrency": conc,
            "num_requests": num,
        }
        wl["id"] = f"in{inp}-out{out}-c{conc}-n{num}"
        per_request = chunks or out  # a streamed chunk per output token, as SGLang sends them
        blocks[w] = (wl, [requests_block(rng, n_requests, per_request, wl) for _ in range(3)])
    total = 0
    for night in range(nights):
        for c in range(clusters):
            for w in range(workloads):
                wl, variants = blocks[w]
                started = START + night * DAY + c * 900 + w * 120 + rng.uniform(0, 30)
                data = dict(base)
                data["cluster"] = {**base["cluster"], "name": CLUSTERS[c]}
                data["workload"] = wl
                data["session"] = f"night-{night:04d}-{c}"
                data["started_at"] = started
                data["finished_at"] = started + 300
                data["metrics"] = {
                    k: (v * rng.uniform(0.95, 1.05) if isinstance(v, float) else v)
                    for k, v in base["metrics"].items()
                }
                data["requests"] = [variants[night % 3]]
                text = json.dumps(data, indent=2)
                (folder / result_filename(CLUSTERS[c], wl["id"], started)).write_text(text)
                total += len(text)
    return total


# ---------------------------------------------------------------------------- one measurement (child)


def measure(op: str, folder: Path, traced: bool) -> dict:
    from sqlalchemy import Engine, event

    from pytest_pd import results
    from pytest_pd.store.index import ResultsIndex
    from pytest_pd.store.summary import summarize

    statements: list[str] = []
    event.listen(Engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    cluster, key = CLUSTERS[0], "in6000-out1000-c16-n32"
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    index = ResultsIndex.open(folder) if op in ("warm", "one", "all") else None
    statements.clear()
    if traced:
        tracemalloc.start()
    t0 = time.perf_counter()
    if op == "find_runs":
        out = len(results.find_runs(folder, cluster, key, "sim-tiny"))
    elif op == "iter_all":
        out = len(sorted((summarize(r) for r in results.iter_results(folder)), key=lambda r: r.started_at))
    elif op == "cold":
        with ResultsIndex.open(folder) as cold:
            out = sum(cold.sync())
    elif op == "warm":
        assert index is not None
        out = sum(index.sync())
    elif op == "one":
        assert index is not None
        out = len(index.runs(cluster, key, "sim-tiny"))
    elif op == "all":
        assert index is not None
        out = len(index.runs())
    else:
        raise SystemExit(f"unknown op {op}")
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] if traced else 0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0
    if index is not None:
        index.close()
    return {
        "seconds": seconds,
        "rss_kib": rss,
        "traced_peak": peak,
        "result": out,
        "statements": len(statements),
    }


def child(op: str, folder: Path, traced: bool) -> dict:
    cmd = [sys.executable, __file__, "--child", op, "--folder", str(folder)] + (
        ["--traced"] if traced else []
    )
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"{op} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nights", type=int, default=730)
    ap.add_argument("--clusters", type=int, default=3, choices=range(1, len(CLUSTERS) + 1))
    ap.add_argument("--workloads", type=int, default=2, choices=range(1, len(WORKLOADS) + 1))
    ap.add_argument("--requests", type=int, default=32, help="per-request records in each file's block")
    ap.add_argument(
        "--chunks", type=int, default=0, help="streamed chunks per request record (default: its output_len)"
    )
    ap.add_argument("--keep", type=Path, help="build the store here and keep it (default: a temp folder)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.folder, args.traced)))
        return 0

    tmp = None if args.keep else tempfile.mkdtemp(prefix="pytest-pd-history-scale-")
    folder = args.keep or Path(str(tmp))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        size = build(folder, args.nights, args.clusters, args.workloads, args.requests, args.chunks)
        n = args.nights * args.clusters * args.workloads
        print(
            f"store: {n} files ({args.nights} nights × {args.clusters} clusters × {args.workloads} "
            f"workloads), {size / 1e6:.0f} MB, {size / n / 1e3:.0f} kB each; built in "
            f"{time.perf_counter() - t0:.0f} s in {folder}",
            file=sys.stderr,
        )
        rows = []
        plan = [
            ("a ", "find_runs", "results.find_runs, one cluster × workload (today)"),
            ("a*", "iter_all", "iter_results + summarize, every file (today)"),
            ("b ", "cold", "ResultsIndex.sync(), cold build"),
            ("c ", "warm", "ResultsIndex.sync(), nothing new"),
            ("d ", "one", "ResultsIndex.runs(), one series"),
            ("d ", "all", "ResultsIndex.runs(), all series"),
        ]
        index_file = folder / ".pytest-pd-index.sqlite"
        for tag, op, what in plan:
            if op == "cold":
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{index_file}{suffix}").unlink(missing_ok=True)
            plain = child(op, folder, traced=False)
            if op == "cold":
                index_file.unlink()
            traced = child(op, folder, traced=True)
            rows.append((tag, what, plain, traced["traced_peak"]))
            print(f"  {what}: {plain['seconds']:.2f} s", file=sys.stderr)
        print()
        head = "time | peak RSS growth | peak traced (Python) | result | SQL statements"
        print(f"| | operation ({n} files) | {head} |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
        for tag, what, m, peak in rows:
            print(
                f"| {tag.strip()} | {what} | {m['seconds'] * 1000:,.0f} ms | {m['rss_kib'] / 1024:,.1f} MB "
                f"| {peak / 1e6:,.1f} MB | {m['result']} | {m['statements']} |"
            )
        print(f"\nindex file: {index_file.stat().st_size / 1e6:.1f} MB (SQLite, WAL checkpointed)")
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
