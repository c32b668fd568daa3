"""A trace replay's prompts as the model's prefix cache sees them (``twin/prefixes.py``) against
the prompts the replay sends, keyed as the simulated server keys them: equal keys exactly where
equal tokens are, without building a token."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest

from pytest_pd.sim.prefix_cache import BLOCK, block_keys
from pytest_pd.twin.prefixes import prompt_keys, trace_keys
from pytest_pd.workload import Workload, load_tokenizer
from pytest_pd.workload.trace import TraceRow, generate_trace, trace_prompts, write_trace
from tests.helpers import SIM_MODEL


def _same_where(a: list[list[int]], b: list[list[int]]) -> None:
    """``a`` and ``b`` have the same shape and agree on which keys are equal."""
    assert [len(k) for k in a] == [len(k) for k in b]
    first_a: dict[int, tuple[int, int]] = {}
    first_b: dict[int, tuple[int, int]] = {}
    for i, (ka, kb) in enumerate(zip(a, b, strict=True)):
        for j, (x, y) in enumerate(zip(ka, kb, strict=True)):
            assert first_a.setdefault(x, (i, j)) == first_b.setdefault(y, (i, j)), (i, j)


@pytest.mark.parametrize("block_size", [512, 100])  # 100: trace blocks not a multiple of BLOCK
def test_keys_are_equal_exactly_where_the_replayed_prompts_tokens_are(tmp_path, block_size):
    rows = generate_trace(60, block_size=block_size, max_blocks=12, new_blocks=3.0, seed=3)
    # a row with fewer ids than its length needs ends with tokens of its own
    rows.append(TraceRow(rows[-1].timestamp_ms + 10, 5 * block_size + 37, 8, rows[0].hash_ids[:2]))
    path = tmp_path / "t.jsonl"
    write_trace(path, rows)
    w = Workload(trace_path=str(path), num_requests=len(rows), trace_block_size=block_size, api="generate")
    sent = [block_keys(p.token_ids.tolist()) for p in trace_prompts(load_tokenizer(SIM_MODEL), w)]
    modelled = trace_keys(w)
    _same_where(sent, modelled)
    uses = Counter(k for ks in modelled for k in set(ks))
    assert max(uses.values()) > 1  # the trace shares prefixes: the check above had equal keys to agree on


def test_a_prompt_shorter_than_one_block_has_no_key():
    assert prompt_keys(TraceRow(0, BLOCK - 1, 1, (7,)), 0, 512) == []
    assert len(prompt_keys(TraceRow(0, 3 * BLOCK, 1, (7,)), 0, 512)) == 3


def test_a_missing_trace_file_is_a_workload_error(tmp_path):
    from pytest_pd.workload.spec import WorkloadError

    w = dataclasses.replace(Workload(api="generate"), trace_path=str(tmp_path / "gone.jsonl"), num_requests=2)
    with pytest.raises(WorkloadError, match="gone.jsonl"):
        trace_keys(w)
