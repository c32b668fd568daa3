"""`pytest-pd bench`: an ad-hoc benchmark of a running router (or SGLang server), with the seed's
``perf_bench.py`` options plus the load generator's own.

    pytest-pd bench --tokenizer-path clusters/models/sim-tiny --port 31100 \\
        --parallel 16 --number 32 --input-length 6000 --output-length 1000

Prints the seed-style result line and table plus bench_serving's metrics, and writes the same run
record as the suites' results store (``record.py``: ``metrics`` = the summary, with ``--repeats N``
the median over repeats, each repeat under ``repeats``; ``source`` is ``bench``).
Exit status: 0 when the run is sound, 1 when requests failed / were not sent or the share of
length mismatches is above ``--max-mismatch-share``, 2 for a usage or set-up error.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

from pytest_pd.bench_args import workload_from_args
from pytest_pd.environment import environment
from pytest_pd.errors import PdError
from pytest_pd.record import ClusterInfo, Environment, ModelInfo, build_record
from pytest_pd.results import save_result, write_record
from pytest_pd.workload.api_probe import PROBE_TIMEOUT_S, choose_api
from pytest_pd.workload.chat import NO_TEMPLATE_NOTE, has_chat_template
from pytest_pd.workload.metrics import RunSummary, summarize
from pytest_pd.workload.prompts import build_prompts
from pytest_pd.workload.run_sync import run_workload_sync
from pytest_pd.workload.spec import (
    API_CHAT,
    WorkloadError,
)
from pytest_pd.workload.tokenizer import load_tokenizer


class _Progress:
    """tqdm bar on stderr: requests done, streamed output tokens/s, errors."""

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        self.bar = None
        self.t0 = time.perf_counter()
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total,
                desc=desc,
                unit="req",
                file=sys.stderr,
                leave=True,
                dynamic_ncols=True,
                mininterval=0.25,
            )

    def __call__(self, done: int, total: int, tokens: int, failed: int) -> None:
        if self.bar is None:
            return
        if done > self.bar.n:
            self.bar.update(done - self.bar.n)
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        self.bar.set_postfix_str(f"{tokens / elapsed:,.0f} tok/s, {failed} errors", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _f(value: float, scale: float = 1.0, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value * scale:,.{digits}f}"


def seed_line(s: RunSummary) -> str:
    """The seed report's four numbers on one line."""
    return (
        f"TTFT (s): {_f(s.mean_ttft_ms, 1e-3)} | throughput (tok/s): "
        f"{_f(s.output_throughput, digits=1)} | TPOT (ms): {_f(s.mean_tpot_ms, digits=1)} | "
        f"mean latency (s): {_f(s.mean_e2e_latency_ms, 1e-3)}"
    )


def seed_table(label: str, summaries: list[RunSummary], agg: RunSummary) -> str:
    head = ["config", "TTFT (s)", "throughput (tok/s)", "TPOT (ms)", "mean latency (s)"]
    rows = []
    if len(summaries) > 1:
        for i, s in enumerate(summaries, 1):
            rows.append(
                [
                    f"{label} (repeat {i})",
                    _f(s.mean_ttft_ms, 1e-3),
                    _f(s.output_throughput, digits=1),
                    _f(s.mean_tpot_ms, digits=1),
                    _f(s.mean_e2e_latency_ms, 1e-3),
                ]
            )
    name = f"{label} (median of {len(summaries)})" if len(summaries) > 1 else label
    rows.append(
        [
            name,
            _f(agg.mean_ttft_ms, 1e-3),
            _f(agg.output_throughput, digits=1),
            _f(agg.mean_tpot_ms, digits=1),
            _f(agg.mean_e2e_latency_ms, 1e-3),
        ]
    )
    out = ["| " + " | ".join(head) + " |", "| :--- | ---: | ---: | ---: | ---: |"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def detail_table(s: RunSummary) -> str:
    """bench_serving-style block of every metric."""
    lines = ["============ Serving Benchmark Result ============"]

    def row(name: str, value: Any) -> None:
        lines.append(f"{name:<40}{value:>12}")

    row("Successful requests:", s.completed)
    row("Failed requests:", s.failed)
    if s.errors_by_kind:
        row("  by kind:", ", ".join(f"{k}={v}" for k, v in s.errors_by_kind.items()))
    row("Not sent (duration limit):", s.not_sent)
    row("Input / output length mismatches:", f"{s.input_len_mismatches} / {s.output_len_mismatches}")
    if s.input_len_unchecked:
        row("Input lengths not checked:", f"{s.input_len_unchecked} (chat, no chat template)")
    row("Benchmark duration (s):", _f(s.duration))
    row("Total input tokens:", s.total_input_tokens)
    row("Total generated tokens:", s.total_output_tokens)
    row("Request throughput (req/s):", _f(s.request_throughput))
    row("Input token throughput (tok/s):", _f(s.input_throughput))
    row("Output token throughput (tok/s):", _f(s.output_throughput))
    row("Peak output token throughput (tok/s):", _f(s.peak_output_throughput))
    row("Total token throughput (tok/s):", _f(s.total_throughput))
    row("Concurrency:", _f(s.concurrency))
    row("Tokens per chunk (ITL) from:", s.token_count_source or "n/a")
    if s.slo:
        row("Goodput (req/s):", _f(s.goodput))
        row("Goodput share:", _f(s.goodput_ratio, 100.0, 1) + " %")
    for title, key, pcts in (
        ("Time to First Token", "ttft", ("p90", "p99")),
        ("Time per Output Token (excl. 1st token)", "tpot", ("p90", "p99")),
        ("Inter-token Latency", "itl", ("p90", "p95", "p99", "max")),
        ("End-to-End Latency", "e2e_latency", ("p90", "p99")),
    ):
        lines.append(f"{'-' * 15}{title}{'-' * 15}")
        d = s.to_dict()
        for stat in ("mean", "median", "std", *pcts):
            row(
                f"{stat.capitalize() if stat in ('mean', 'median') else stat.upper()} "
                f"{key.upper().replace('_LATENCY', '')} (ms):",
                _f(d[f"{stat}_{key}_ms"]),
            )
    lines.append(f"{'-' * 15}Client queueing (not in TTFT){'-' * 15}")
    row(
        "Mean / median / P99 queue (ms):",
        f"{_f(s.mean_queue_ms)} / {_f(s.median_queue_ms)} / {_f(s.p99_queue_ms)}",
    )
    lines.append("=" * 50)
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except PdError as exc:
        print(f"pytest-pd bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pytest-pd bench: interrupted", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    if args.repeats < 1:
        raise WorkloadError(f"--repeats must be >= 1 (got {args.repeats})")
    say = print
    host = args.ip if ":" not in args.ip else f"[{args.ip}]"
    base_url = f"http://{host}:{args.port}"
    if args.api is None:
        # each probe within the time a request is given (30 s at most): three at most
        choice = choose_api(base_url, min(PROBE_TIMEOUT_S, args.request_timeout), model=args.model)
        args.api = choice.api
        say(f"api: {choice.api} ({choice.reason})", flush=True)
    workload = workload_from_args(args)
    slo = {name: ms for given in args.slo for name, ms in given.items()}
    label = args.label or f"bench-{args.ip}-{args.port}"
    tokenizer = load_tokenizer(args.tokenizer_path)
    if workload.api == API_CHAT and not has_chat_template(tokenizer):
        say(f"note: {NO_TEMPLATE_NOTE}", flush=True)
    t = time.perf_counter()
    prompts = build_prompts(tokenizer, workload)
    say(
        f"{workload.id}: {len(prompts)} prompts built in {time.perf_counter() - t:.2f} s; "
        f"sending to {base_url}",
        flush=True,
    )

    started_at = time.time()
    summaries: list[RunSummary] = []
    runs: list[dict[str, Any]] = []
    model = args.model
    for i in range(args.repeats):
        desc = f"repeat {i + 1}/{args.repeats}" if args.repeats > 1 else workload.id
        progress = _Progress(len(prompts), desc, enabled=not args.no_progress)
        try:
            result = run_workload_sync(
                base_url,
                workload,
                prompts,
                on_progress=progress,
                progress_interval_s=0.5,
                model=model,
                tokenizer=tokenizer,
            )
        finally:
            progress.close()
        model = model or result.model
        runs.append(result.to_dict())
        summary = summarize(result, slo=slo or None)
        summaries.append(summary)
        if args.repeats > 1:
            say(f"repeat {i + 1}: {seed_line(summary)}", flush=True)
    finished_at = time.time()
    record = build_record(
        source="bench",  # ad hoc: never picked as a baseline or shown as a suite's history
        cluster=ClusterInfo(name=label, router_url=base_url),
        model=ModelInfo(name=model, path=str(Path(args.tokenizer_path).expanduser())),
        workload=workload,
        summaries=summaries,
        runs=runs,
        slo=slo,
        started_at=started_at,
        finished_at=finished_at,
        environment=Environment(**environment(Path.cwd())),
        command=["pytest-pd", "bench", *sys.argv[2:]] if sys.argv[1:2] == ["bench"] else None,
    )
    agg = RunSummary.from_dict(record.metrics)
    say(detail_table(agg))
    say(seed_table(label, summaries, agg))
    say(seed_line(agg))
    if args.output_json:
        path = write_record(Path(args.output_json), record)
    else:
        path = save_result(args.results_dir, record)
    say(f"result: {path}")
    if record.problems:
        print("pytest-pd bench: run not sound: " + "; ".join(record.problems), file=sys.stderr)
        return 1
    return 0
