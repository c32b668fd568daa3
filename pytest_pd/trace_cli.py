"""`pytest-pd trace`: write a synthetic request trace in the Mooncake format (shared system
prompts, multi-turn conversations that resend their history), for ``Workload(trace_path=...)``
and ``pytest-pd bench --trace``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pytest_pd.errors import PdError
from pytest_pd.workload.trace import generate_trace, write_trace


def add_parser(sub: Any) -> None:
    text = "write a synthetic request trace in the Mooncake format (with prefix sharing)"
    p = sub.add_parser("trace", help=text, description=__doc__)
    p.add_argument("-o", "--output", type=Path, required=True, help="the JSONL file to write")
    p.add_argument("--requests", type=int, default=1000, help="rows (default: 1000)")
    p.add_argument("--rate", type=float, default=2.0, help="mean requests per second (default: 2)")
    p.add_argument("--system-prompts", type=int, default=8, help="shared system prompts (default: 8)")
    p.add_argument("--system-blocks", type=int, default=4, help="blocks per system prompt (default: 4)")
    p.add_argument(
        "--followup-share",
        type=float,
        default=0.3,
        help="share of requests that continue a conversation, resending its history (default: 0.3)",
    )
    p.add_argument("--new-blocks", type=float, default=6.0, help="mean new blocks per request (default: 6)")
    p.add_argument("--output-mean", type=int, default=300, help="mean output tokens (default: 300)")
    p.add_argument("--max-blocks", type=int, default=64, help="longest prompt in blocks (default: 64)")
    p.add_argument("--block-size", type=int, default=512, help="tokens per hash id (default: 512)")
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    try:
        rows = generate_trace(
            args.requests,
            rate=args.rate,
            system_prompts=args.system_prompts,
            system_blocks=args.system_blocks,
            followup_share=args.followup_share,
            new_blocks=args.new_blocks,
            output_mean=args.output_mean,
            max_blocks=args.max_blocks,
            block_size=args.block_size,
            seed=args.seed,
        )
        write_trace(args.output, rows)
    except (PdError, OSError) as exc:
        print(f"pytest-pd trace: {exc}", file=sys.stderr)
        return 2
    span = rows[-1].timestamp_ms / 1000.0
    tokens = sum(r.input_len for r in rows)
    mean = tokens / len(rows)
    print(f"{args.output}: {len(rows)} requests over {span:.0f} s, {mean:.0f} prompt tokens on average")
    return 0
