"""Load generator: token-exact prompts, a streaming client, a runner and bench_serving metrics.

Needs only a base URL and a tokenizer; imports nothing from pytest or the cluster code.
"""

from .metrics import (
    RunSummary,
    aggregate_repeats,
    peak_output_throughput,
    request_table,
    run_problems,
    summarize,
)
from .prompts import build_prompts
from .record import ERROR_KINDS, RequestRecord
from .result import RunResult
from .run_sync import run_workload_sync
from .runner import arrival_offsets, run_workload
from .spec import Prompt, Workload, WorkloadError
from .tokenizer import load_tokenizer

__all__ = [
    "ERROR_KINDS",
    "Prompt",
    "RequestRecord",
    "RunResult",
    "RunSummary",
    "Workload",
    "WorkloadError",
    "aggregate_repeats",
    "arrival_offsets",
    "build_prompts",
    "load_tokenizer",
    "peak_output_throughput",
    "request_table",
    "run_problems",
    "run_workload",
    "run_workload_sync",
    "summarize",
]
