"""A run's prompts as the prefix cache sees them, without building a token: per request, the
chained keys of its ``BLOCK``-token blocks (:mod:`pytest_pd.sim.prefix_cache`), equal where the
prompts the run sends hold equal tokens: a trace replay's (:func:`pytest_pd.workload.trace.trace_prompts`),
prefix groups' and conversations' (:func:`workload_keys`).

A replayed prompt is its trace row's blocks in order — each hash id the same
``trace_block_size`` tokens wherever it appears, the last one cut to the prompt's length — and,
when the row has too few ids, tokens of its own. A cache block's key names the pieces of those
blocks it covers (hash id and offsets, or the row for its own tokens), chained to the key before
it, so two prompts' blocks get equal keys exactly when their tokens up to there are equal."""

from __future__ import annotations

from collections.abc import Sequence

from pytest_pd.sim.prefix_cache import BLOCK
from pytest_pd.workload.conversation import prefix_group
from pytest_pd.workload.spec import Workload
from pytest_pd.workload.trace import TraceRow, trace_rows

Piece = tuple[object, int, int]  # (source: a hash id or ("own", row), first offset, end offset)


def _pieces(row: TraceRow, index: int, block_size: int) -> list[Piece]:
    """The prompt of ``row`` as runs of tokens from their sources, in order."""
    out: list[Piece] = []
    have = 0
    for h in row.hash_ids[: -(-row.input_len // block_size)]:
        take = min(block_size, row.input_len - have)
        out.append((h, 0, take))
        have += take
    if have < row.input_len:
        out.append((("own", index), 0, row.input_len - have))
    return out


def prompt_keys(row: TraceRow, index: int, block_size: int) -> list[int]:
    """The chained keys of every whole ``BLOCK`` of the replayed prompt of ``row``."""
    keys: list[int] = []
    prev = 0
    window: list[Piece] = []
    filled = 0
    for source, start, end in _pieces(row, index, block_size):
        while start < end:
            take = min(BLOCK - filled, end - start)
            window.append((source, start, start + take))
            filled += take
            start += take
            if filled == BLOCK:
                prev = hash((prev, tuple(window)))
                keys.append(prev)
                window, filled = [], 0
    return keys


def trace_keys(workload: Workload) -> list[list[int]]:
    """:func:`prompt_keys` of every row a trace workload replays (reads its trace file)."""
    size = workload.trace_block_size
    return [prompt_keys(row, i, size) for i, row in enumerate(trace_rows(workload))]


def shares_prefixes(workload: Workload) -> bool:
    """Whether the workload's prompts share prefixes: a trace's, prefix groups', conversations'."""
    return bool(workload.trace_path) or bool(workload.prefix_groups) or workload.turns > 1


def workload_keys(workload: Workload, input_lens: Sequence[int]) -> list[list[int]] | None:
    """Every request's keys when the workload's prompts share prefixes, None when they share
    nothing. ``input_lens``: each request's whole prompt length (a later turn's with the
    conversation so far). A trace's come from its hash ids. A prefix group's prompts share the
    blocks inside its ``prefix_len`` tokens; a conversation's later turn starts with the
    previous turn's prompt (its whole blocks), then the answer and new tokens of its own."""
    if workload.trace_path:
        return trace_keys(workload)
    if not shares_prefixes(workload):
        return None
    keys: list[list[int]] = []
    for i, n in enumerate(input_lens):
        blocks = int(n) // BLOCK
        if i % workload.turns:
            head = keys[-1]
        else:
            group = prefix_group(workload, i)
            shared = workload.prefix_len // BLOCK if group is not None else 0
            head = [hash(("prefix", group, j)) for j in range(min(shared, blocks))]
        keys.append(head + [hash(("own", i, j)) for j in range(len(head), blocks)])
    return keys
