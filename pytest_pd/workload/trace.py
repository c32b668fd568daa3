"""Request traces in the public Mooncake format: one JSON object per line with ``timestamp``
(milliseconds), ``input_length``, ``output_length`` and ``hash_ids`` (one id per
``block_size``-token block of the prompt; equal leading ids are a shared prefix).

Replaying one (``Workload.trace_path``) sends each row at its timestamp (divided by
``trace_time_scale``) with a token-exact prompt built block by block: every hash id stands for the
same ``block_size`` random tokens wherever it appears, so prompts share exactly the prefixes the
trace says and a server's prefix cache finds them. :func:`generate_trace` writes such a trace
(system prompts shared by many requests, multi-turn conversations that resend their history).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .spec import Prompt, Workload, WorkloadError, json_object_line
from .tokenizer import candidate_token_ids

FORMAT_HINT = (
    'Each line must be a JSON object like {"timestamp": 0, "input_length": 6755, '
    '"output_length": 500, "hash_ids": [0, 1, 2]} (the Mooncake trace format; timestamps in '
    "milliseconds, one hash id per block of the prompt)."
)


@dataclass(frozen=True)
class TraceRow:
    timestamp_ms: float
    input_len: int
    output_len: int
    hash_ids: tuple[int, ...]

    def to_json(self) -> str:
        ts = int(self.timestamp_ms) if float(self.timestamp_ms).is_integer() else self.timestamp_ms
        return json.dumps(
            {
                "timestamp": ts,
                "input_length": self.input_len,
                "output_length": self.output_len,
                "hash_ids": list(self.hash_ids),
            }
        )


def _count(obj: dict[str, Any], names: tuple[str, ...], where: str, low: int) -> int:
    value = next((obj[k] for k in names if k in obj), None)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise WorkloadError(f"{where}: {names[0]} must be an integer >= {low} (got {value!r}). {FORMAT_HINT}")
    return value


def parse_trace(text: str, source: str) -> list[TraceRow]:
    """The rows of a trace's text, in timestamp order (``source`` names it in errors)."""
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{source}:{lineno}"
        obj = json_object_line(line, where, FORMAT_HINT)
        ts = obj.get("timestamp", obj.get("created_time"))
        if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not ts >= 0:
            raise WorkloadError(f"{where}: timestamp must be a number >= 0 (got {ts!r}). {FORMAT_HINT}")
        ids = obj.get("hash_ids", [])
        if not isinstance(ids, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in ids):
            raise WorkloadError(f"{where}: hash_ids must be a list of integers. {FORMAT_HINT}")
        rows.append(
            TraceRow(
                float(ts),
                _count(obj, ("input_length", "input_tokens"), where, 1),
                _count(obj, ("output_length", "output_tokens"), where, 1),
                tuple(ids),
            )
        )
    if not rows:
        raise WorkloadError(f"{source}: the trace holds no requests. {FORMAT_HINT}")
    return sorted(rows, key=lambda r: r.timestamp_ms)


def read_trace(path: str | Path) -> list[TraceRow]:
    """The rows of a trace file (cached per file version). WorkloadError naming the file, the
    line and what to fix."""
    p = Path(path).expanduser()
    try:
        st = p.stat()
    except OSError as exc:
        raise WorkloadError(f"Cannot read the trace file {str(p)!r}: {exc}. {FORMAT_HINT}") from None
    return list(_read(str(p), st.st_mtime_ns, st.st_size))


@functools.lru_cache(maxsize=4)
def _read(path: str, _mtime: int, _size: int) -> tuple[TraceRow, ...]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkloadError(f"Cannot read the trace file {path!r}: {exc}. {FORMAT_HINT}") from None
    return tuple(parse_trace(text, path))


def trace_rows(workload: Workload) -> list[TraceRow]:
    """The rows a workload replays: its trace's first ``num_requests``."""
    rows = read_trace(str(workload.trace_path))
    if len(rows) < workload.num_requests:
        raise WorkloadError(
            f"the trace file {workload.trace_path} holds {len(rows)} requests, fewer than "
            f"num_requests={workload.num_requests}: replay at most {len(rows)}"
        )
    return rows[: workload.num_requests]


def trace_offsets(workload: Workload) -> np.ndarray:
    """Seconds after the first request at which each replayed row is sent: its timestamp
    divided by ``trace_time_scale``."""
    ts = np.array([r.timestamp_ms for r in trace_rows(workload)], dtype=float)
    return (ts - ts[0]) / 1000.0 / workload.trace_time_scale


def trace_prompts(tokenizer: Any, workload: Workload) -> list[Prompt]:
    """Token-id prompts of the replayed rows: each hash id is the same ``trace_block_size``
    tokens wherever it appears (drawn from the id and ``workload.seed``); a prompt longer than its
    blocks ends with tokens of its own."""
    candidates = candidate_token_ids(tokenizer)
    dtype = np.int32 if candidates[-1] < 2**31 else np.int64
    size = workload.trace_block_size
    blocks: dict[int, np.ndarray] = {}
    prompts = []
    for i, row in enumerate(trace_rows(workload)):
        parts = []
        for h in row.hash_ids[: -(-row.input_len // size)]:
            if h not in blocks:
                blocks[h] = (
                    np.random.default_rng([workload.seed, 2, h]).choice(candidates, size).astype(dtype)
                )
            parts.append(blocks[h])
        have = len(parts) * size
        if have < row.input_len:
            rng = np.random.default_rng([workload.seed, 3, i])
            parts.append(rng.choice(candidates, row.input_len - have).astype(dtype))
        ids = np.concatenate(parts)[: row.input_len]
        prompts.append(Prompt(token_ids=ids, output_len=row.output_len))
    return prompts


def generate_trace(
    requests: int = 1000,
    *,
    rate: float = 2.0,
    system_prompts: int = 8,
    system_blocks: int = 4,
    followup_share: float = 0.3,
    new_blocks: float = 6.0,
    output_mean: int = 300,
    max_blocks: int = 64,
    block_size: int = 512,
    seed: int = 0,
) -> list[TraceRow]:
    """A synthetic Mooncake-format trace with prefix sharing: Poisson arrivals at ``rate``
    requests/s; each request starts a conversation under one of ``system_prompts`` shared system
    prompts (``system_blocks`` blocks each, the first few far more popular) or, with probability
    ``followup_share``, continues a recent conversation, resending its whole history (the
    earlier turns' prompts) before its new blocks, unless that would make it longer than
    ``max_blocks``; ``new_blocks`` blocks of new text on average (geometric), the last block
    partly filled; output lengths log-normal around ``output_mean``."""
    if (
        requests < 1
        or rate <= 0
        or system_prompts < 1
        or not 0 <= followup_share < 1
        or not 0 <= system_blocks < max_blocks
    ):
        raise WorkloadError(
            "generate_trace needs requests >= 1, rate > 0, system_prompts >= 1, "
            "0 <= followup_share < 1 and 0 <= system_blocks < max_blocks"
        )
    rng = np.random.default_rng(seed)
    next_id = system_prompts * system_blocks
    popularity = 1.0 / np.arange(1, system_prompts + 1)
    popularity /= popularity.sum()
    conversations: list[list[int]] = []
    t = 0.0
    rows = []
    for _ in range(requests):
        fresh = min(int(rng.geometric(1.0 / max(new_blocks, 1.0))), max_blocks - system_blocks)
        k = len(conversations) - 1 - min(int(rng.geometric(0.2)) - 1, len(conversations) - 1)
        if conversations and rng.random() < followup_share and len(conversations[k]) + fresh <= max_blocks:
            history = conversations[k]
        else:
            s = int(rng.choice(system_prompts, p=popularity))
            history = list(range(s * system_blocks, (s + 1) * system_blocks))
            conversations.append(history)
            k = len(conversations) - 1
        ids = history + list(range(next_id, next_id + fresh))
        next_id += fresh
        conversations[k] = ids
        input_len = (len(ids) - 1) * block_size + int(rng.integers(1, block_size + 1))
        output_len = max(1, int(rng.lognormal(np.log(output_mean) - 0.18, 0.6)))
        rows.append(TraceRow(round(t), input_len, output_len, tuple(ids)))
        t += rng.exponential(1000.0 / rate)
    return rows


def write_trace(path: str | Path, rows: list[TraceRow]) -> None:
    Path(path).write_text("".join(r.to_json() + "\n" for r in rows), encoding="utf-8")
