"""`pytest-pd bench`'s command line: the seed's ``perf_bench.py`` options and the load generator's
own, and the workload they describe."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from pytest_pd.option_values import slos
from pytest_pd.workload.spec import (
    APIS,
    DEFAULT_REQUEST_TIMEOUT_S,
    DISTRIBUTIONS,
    PROMPT_KINDS,
    PROMPT_TEXT,
    Workload,
)

HELP = "benchmark a running router/server (the seed's perf_bench.py options, and more)"


def _rate(text: str) -> float:
    value = float(text)
    if math.isnan(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0 or 'inf', got {text!r}")
    return value


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "bench", help=HELP, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    seed = p.add_argument_group("perf_bench.py options")
    seed.add_argument(
        "--model",
        default=None,
        help="model name for /v1/completions and the results (default: the first "
        "of the server's GET /v1/models)",
    )
    seed.add_argument(
        "--tokenizer-path",
        required=True,
        help="local model folder holding the cluster's tokenizer (never downloaded)",
    )
    seed.add_argument("--ip", default="127.0.0.1", help="router/server address (default: 127.0.0.1)")
    seed.add_argument("--port", type=int, default=8000, help="router/server port (default: 8000)")
    seed.add_argument(
        "--parallel", type=int, default=16, help="concurrency cap: requests in flight at once (default: 16)"
    )
    seed.add_argument("--number", type=int, default=32, help="measured requests (default: 32)")
    seed.add_argument(
        "--input-length", type=int, default=6000, help="prompt tokens per request (default: 6000)"
    )
    seed.add_argument(
        "--output-length",
        type=int,
        default=1000,
        help="output tokens per request, forced with ignore_eos (default: 1000)",
    )
    wl = p.add_argument_group("workload")
    wl.add_argument(
        "--api",
        choices=APIS,
        default=None,
        help="SGLang /generate (token ids), OpenAI /v1/completions or /v1/chat/completions "
        "(exact-length text); default: probe the server (/generate, else /v1/completions) and "
        "say which and why",
    )
    wl.add_argument(
        "--disable-ignore-eos",
        action="store_true",
        help="do not send ignore_eos (for servers that reject it): outputs may end early; "
        "their lengths come from the server's usage",
    )
    wl.add_argument(
        "--completions-prompt",
        choices=PROMPT_KINDS,
        default=PROMPT_TEXT,
        help="/v1/completions prompt form: exact-length text (what the router "
        "accepts) or token ids (default: text)",
    )
    wl.add_argument(
        "--range-ratio",
        type=float,
        default=1.0,
        help="lengths uniform in [L*ratio, L]; 1.0 = fixed (default: 1.0)",
    )
    wl.add_argument(
        "--length-distribution",
        choices=DISTRIBUTIONS,
        default="uniform",
        help="uniform (within --range-ratio), or normal / lognormal around the lengths with "
        "--input-std / --output-std tokens (default: uniform)",
    )
    wl.add_argument("--input-std", type=float, default=0.0, help="prompt length deviation, tokens")
    wl.add_argument("--output-std", type=float, default=0.0, help="output length deviation, tokens")
    wl.add_argument(
        "--lengths-file",
        default=None,
        help="CSV length histogram (input_len,output_len[,count]): each request draws a row",
    )
    wl.add_argument(
        "--request-rate",
        type=_rate,
        default=math.inf,
        help="open loop: mean requests/s, Poisson (default: inf = closed loop)",
    )
    wl.add_argument(
        "--burstiness",
        type=_rate,
        default=1.0,
        help="gamma shape of arrival gaps at a finite rate: 1 = Poisson, <1 burstier",
    )
    wl.add_argument("--seed", type=int, default=0, help="prompt and arrival seed (default: 0)")
    wl.add_argument(
        "--prefix-groups",
        type=int,
        default=0,
        help="shared-prefix workload: number of prefix groups (default: 0 = off)",
    )
    wl.add_argument(
        "--prefix-len", type=int, default=0, help="shared-prefix workload: tokens of the common prefix"
    )
    wl.add_argument(
        "--turns",
        type=int,
        default=1,
        help="multi-turn: requests per conversation; each later turn resends the conversation "
        "so far with the server's answers (--parallel caps conversations; default: 1)",
    )
    wl.add_argument(
        "--turn-input-length",
        type=int,
        default=256,
        help="multi-turn: new prompt tokens per later turn (default: 256)",
    )
    wl.add_argument(
        "--think-time",
        type=float,
        default=0.0,
        help="multi-turn: seconds between an answer and the next turn (default: 0)",
    )
    wl.add_argument(
        "--dataset",
        default=None,
        metavar="JSONL",
        help='prompts from a JSONL file ({"prompt": text | [ids], "output_len": N})',
    )
    wl.add_argument(
        "--trace",
        default=None,
        metavar="JSONL",
        help="replay a request trace in the Mooncake format (timestamp ms, input_length, "
        "output_length, hash_ids): its first --number rows, at their timestamps",
    )
    wl.add_argument(
        "--trace-time-scale",
        type=float,
        default=1.0,
        help="replay the trace this many times faster (default: 1)",
    )
    wl.add_argument(
        "--warmup-requests", type=int, default=1, help="unmeasured warm-up requests sent first (default: 1)"
    )
    wl.add_argument(
        "--request-timeout",
        type=_rate,
        default=DEFAULT_REQUEST_TIMEOUT_S,
        help=f"seconds per request (default: {DEFAULT_REQUEST_TIMEOUT_S:g})",
    )
    wl.add_argument(
        "--duration-limit",
        type=_rate,
        default=math.inf,
        help="stop dispatching after this many seconds (default: none)",
    )
    run = p.add_argument_group("run and verdict")
    run.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="measure the workload N times; the verdict uses the median (default: 1)",
    )
    run.add_argument(
        "--slo",
        type=slos,
        nargs="+",
        default=[],
        metavar="NAME=MS",
        help="SLOs for goodput, e.g. --slo ttft_ms=2000 tpot_ms=50",
    )
    run.add_argument(
        "--max-mismatch-share",
        type=float,
        default=0.0,
        help="allowed share of requests whose server-reported length differs from "
        "the requested one (default: 0)",
    )
    run.add_argument(
        "--processes", type=int, default=1, help="client processes driving the load (default: 1)"
    )
    out = p.add_argument_group("output")
    out.add_argument(
        "--label",
        default=None,
        help="name of what is measured, in the table and the file name (default: bench-IP-PORT)",
    )
    out.add_argument(
        "--results-dir",
        type=Path,
        default=Path("results"),
        help="where the JSON result goes (default: ./results)",
    )
    out.add_argument(
        "--output-json", type=Path, default=None, help="write the JSON result to this file instead"
    )
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def workload_from_args(args: argparse.Namespace) -> Workload:
    return Workload(
        input_len=args.input_length,
        output_len=args.output_length,
        concurrency=args.parallel,
        num_requests=args.number,
        range_ratio=args.range_ratio,
        length_distribution=args.length_distribution,
        input_std=args.input_std,
        output_std=args.output_std,
        lengths_path=str(Path(args.lengths_file).expanduser().resolve()) if args.lengths_file else None,
        request_rate=args.request_rate,
        seed=args.seed,
        api=args.api,
        warmup_requests=args.warmup_requests,
        request_timeout_s=args.request_timeout,
        burstiness=args.burstiness,
        prefix_groups=args.prefix_groups,
        prefix_len=args.prefix_len,
        turns=args.turns,
        turn_input_len=args.turn_input_length,
        think_time_s=args.think_time,
        dataset_path=str(Path(args.dataset).expanduser().resolve()) if args.dataset else None,
        trace_path=str(Path(args.trace).expanduser().resolve()) if args.trace else None,
        trace_time_scale=args.trace_time_scale,
        duration_limit_s=args.duration_limit,
        max_mismatch_share=args.max_mismatch_share,
        completions_prompt=args.completions_prompt,
        client_processes=args.processes,
        ignore_eos=not args.disable_ignore_eos,
    )
