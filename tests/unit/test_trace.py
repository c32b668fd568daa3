"""Request traces in the Mooncake format (workload/trace.py): reading with clear errors, prompts
that share exactly the blocks the hash ids say, arrivals from the timestamps, the generator."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_pd.workload import Workload, WorkloadError, build_prompts, load_tokenizer
from pytest_pd.workload.runner import arrival_offsets
from pytest_pd.workload.trace import TraceRow, generate_trace, parse_trace, read_trace, write_trace
from tests.helpers import SIM_MODEL

ROWS = """\
{"timestamp": 1000, "input_length": 1100, "output_length": 5, "hash_ids": [0, 1, 2]}
{"timestamp": 0, "input_length": 600, "output_length": 7, "hash_ids": [0, 1]}
{"timestamp": 2500, "input_tokens": 1500, "output_tokens": 3, "hash_ids": [0, 3, 4]}
"""


def test_rows_are_read_in_timestamp_order_with_the_aliases():
    rows = parse_trace(ROWS, "t.jsonl")
    assert [r.timestamp_ms for r in rows] == [0, 1000, 2500]
    assert rows[2] == TraceRow(2500, 1500, 3, (0, 3, 4))


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("not json", "t.jsonl:2: not JSON"),
        (
            '{"timestamp": -1, "input_length": 5, "output_length": 1}',
            "t.jsonl:2: timestamp must be a number >= 0",
        ),
        (
            '{"timestamp": 0, "input_length": 0, "output_length": 1}',
            "t.jsonl:2: input_length must be an integer >= 1",
        ),
        (
            '{"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": "a"}',
            "hash_ids must be a list",
        ),
        ("[1, 2]", "t.jsonl:2: expected a JSON object"),
    ],
)
def test_a_bad_line_is_named_with_what_to_write(line, says):
    good = '{"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": [0]}'
    with pytest.raises(WorkloadError) as err:
        parse_trace(good + "\n" + line + "\n", "t.jsonl")
    assert says in str(err.value) and "Mooncake trace format" in str(err.value)


def test_a_missing_file_or_too_few_rows_is_a_clear_error(tmp_path):
    with pytest.raises(WorkloadError, match="Cannot read the trace file"):
        read_trace(tmp_path / "nope.jsonl")
    path = tmp_path / "t.jsonl"
    path.write_text(ROWS)
    with pytest.raises(WorkloadError, match="holds 3 requests, fewer than num_requests=4"):
        build_prompts(load_tokenizer(SIM_MODEL), Workload(trace_path=str(path), num_requests=4))


def test_prompts_share_exactly_the_blocks_their_hash_ids_share(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(ROWS)
    w = Workload(trace_path=str(path), num_requests=3, trace_block_size=512)
    a, b, c = (np.asarray(p.token_ids) for p in build_prompts(load_tokenizer(SIM_MODEL), w))
    assert [len(a), len(b), len(c)] == [600, 1100, 1500]
    assert np.array_equal(a, b[:600])  # hash ids 0, 1: the first 600 tokens of blocks 0 and 1
    assert np.array_equal(b[:512], c[:512]) and not np.array_equal(b[512:1024], c[512:1024])
    assert [p.output_len for p in build_prompts(load_tokenizer(SIM_MODEL), w)] == [7, 5, 3]


def test_arrivals_follow_the_timestamps_scaled(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(ROWS)
    assert arrival_offsets(Workload(trace_path=str(path), num_requests=3), 3).tolist() == [0.0, 1.0, 2.5]
    fast = Workload(trace_path=str(path), num_requests=2, trace_time_scale=2.0)
    assert arrival_offsets(fast, 2).tolist() == [0.0, 0.5]


def test_generated_trace_shares_prefixes_and_round_trips(tmp_path):
    rows = generate_trace(400, rate=4.0, seed=3)
    assert rows == generate_trace(400, rate=4.0, seed=3)  # deterministic
    assert all(len(r.hash_ids) == -(-r.input_len // 512) for r in rows)  # one id per block
    assert all(len(r.hash_ids) <= 64 for r in rows)
    span = rows[-1].timestamp_ms / 1000
    assert 400 / span == pytest.approx(4.0, rel=0.15)
    seen: set[int] = set()
    shared = 0
    for r in rows:
        shared += sum(512 for h in r.hash_ids if h in seen)
        seen.update(r.hash_ids)
    assert shared / sum(r.input_len for r in rows) > 0.3
    path = tmp_path / "g.jsonl"
    write_trace(path, rows)
    assert read_trace(path) == rows


def test_a_trace_workload_names_its_file_and_refuses_what_it_cannot_replay():
    w = Workload(trace_path="x/prod-day.jsonl", num_requests=1000, concurrency=512)
    assert w.id == "trprod_day-c512-n1000"
    with pytest.raises(WorkloadError, match="sends token-id prompts"):
        Workload(trace_path="x.jsonl", api="completions")
    with pytest.raises(WorkloadError, match="leave request_rate at inf"):
        Workload(trace_path="x.jsonl", request_rate=2.0)
    with pytest.raises(WorkloadError, match="names only the file's stem"):
        Workload.from_id("trprod_day-c512-n1000")
