"""summarize() on hand-built records with known numbers (bench_serving definitions)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pytest_pd.workload import (
    RequestRecord,
    RunResult,
    RunSummary,
    Workload,
    aggregate_repeats,
    peak_output_throughput,
    run_problems,
    summarize,
)
from pytest_pd.workload.metrics import request_itls, request_table

WL = Workload(input_len=100, output_len=5, concurrency=4, num_requests=5, warmup_requests=0)


def rec(
    index,
    *,
    t_start,
    t_end,
    chunks=(),
    tokens=(),
    completion=None,
    prompt_tokens=None,
    prompt_len=100,
    expected=5,
    t_queued=0.0,
    kind=None,
    status=200,
):
    chunks = list(chunks)
    return RequestRecord(
        index=index,
        prompt_len=prompt_len,
        expected_output_len=expected,
        t_queued=t_queued,
        t_start=t_start,
        t_first_token=chunks[0] if chunks else None,
        t_end=t_end,
        chunk_times=chunks,
        chunk_tokens=list(tokens),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion,
        error_kind=kind,
        error="boom" if kind else "",
        status=status,
    )


def make_result(records, workload=WL):
    starts = [r.t_start for r in records if r.t_start is not None]
    ends = [r.t_end for r in records if r.t_end is not None]
    return RunResult(
        workload=workload,
        records=records,
        started=min(starts),
        finished=max(ends),
        base_url="http://127.0.0.1:1",
    )


# A: /generate, per-chunk counts, 5 tokens as designed
A = rec(
    0,
    t_start=0.0,
    t_end=1.7,
    chunks=[1.0, 1.1, 1.3, 1.6],
    tokens=[1, 2, 4, 5],
    completion=5,
    prompt_tokens=100,
)
# B: queued 0.5 s, 4 tokens instead of 5 (mismatch), no server prompt count -> prompt_len
B = rec(1, t_start=0.5, t_end=3.0, chunks=[2.5, 3.0], tokens=[2, 4], completion=4, prompt_len=80)
# C: HTTP 500
C = rec(2, t_start=0.2, t_end=0.3, kind="http_status", status=500)
# D: stream cut after some output; its first chunk would give TTFT 0 if it were counted
D = rec(3, t_start=0.1, t_end=4.0, chunks=[0.1, 0.2], tokens=[1, 2], completion=2, kind="incomplete_stream")
# E: completions-style, no per-chunk counts (one ITL per gap)
E = rec(4, t_start=0.0, t_end=1.8, chunks=[1.0, 1.5, 1.7], completion=3, prompt_tokens=50, expected=3)

ITL_S = [0.1, 0.1, 0.1, 0.3, 0.25, 0.25, 0.5, 0.2]


@pytest.fixture
def summary():
    return summarize(make_result([A, B, C, D, E]))


def test_counts_and_errors(summary):
    assert summary.completed == 3
    assert summary.failed == 2
    assert summary.errors_by_kind == {"http_status": 1, "incomplete_stream": 1}
    assert summary.output_len_mismatches == 1
    assert summary.max_concurrency == 4


def test_tokens_and_throughputs(summary):
    assert summary.duration == pytest.approx(4.0)
    assert summary.total_input_tokens == 100 + 80 + 50
    assert summary.total_output_tokens == 5 + 4 + 3
    assert summary.request_throughput == pytest.approx(3 / 4.0)
    assert summary.input_throughput == pytest.approx(230 / 4.0)
    assert summary.output_throughput == pytest.approx(12 / 4.0)
    assert summary.total_throughput == pytest.approx(242 / 4.0)
    assert summary.concurrency == pytest.approx((1.7 + 2.5 + 1.8) / 4.0)


def test_ttft_e2e_tpot(summary):
    ttft = np.array([1.0, 2.0, 1.0]) * 1000
    e2e = np.array([1.7, 2.5, 1.8]) * 1000
    tpot = np.array([0.7 / 4, 0.5 / 3, 0.8 / 2]) * 1000
    for name, arr in (("ttft", ttft), ("e2e_latency", e2e), ("tpot", tpot)):
        got = summary.to_dict()
        assert got[f"mean_{name}_ms"] == pytest.approx(np.mean(arr))
        assert got[f"median_{name}_ms"] == pytest.approx(np.median(arr))
        assert got[f"std_{name}_ms"] == pytest.approx(np.std(arr))
        assert got[f"p90_{name}_ms"] == pytest.approx(np.percentile(arr, 90))
        assert got[f"p99_{name}_ms"] == pytest.approx(np.percentile(arr, 99))
    assert summary.mean_ttft_ms == pytest.approx(4000 / 3)
    assert summary.mean_ttft_ms > 0  # the failed D (TTFT 0) is not in there


def test_itl_pooled_and_split_per_token(summary):
    itl = np.array(ITL_S) * 1000
    assert summary.mean_itl_ms == pytest.approx(np.mean(itl))
    assert summary.median_itl_ms == pytest.approx(np.median(itl))
    assert summary.std_itl_ms == pytest.approx(np.std(itl))
    assert summary.p90_itl_ms == pytest.approx(np.percentile(itl, 90))
    assert summary.p95_itl_ms == pytest.approx(np.percentile(itl, 95))
    assert summary.p99_itl_ms == pytest.approx(np.percentile(itl, 99))
    assert summary.max_itl_ms == pytest.approx(500.0)
    assert request_itls(A) == pytest.approx([0.1, 0.1, 0.1, 0.3])
    assert request_itls(B) == pytest.approx([0.25, 0.25])
    assert request_itls(E) == pytest.approx([0.5, 0.2])


def test_queue_time_reported_apart_from_ttft(summary):
    assert summary.mean_queue_ms == pytest.approx(500 / 3)
    # B's TTFT is measured from its start (after the slot), not from when it was queued
    assert summary.to_dict()["median_ttft_ms"] == pytest.approx(1000.0)


def test_all_failed_gives_nan_not_zero():
    s = summarize(make_result([C, D]))
    assert s.completed == 0 and s.failed == 2
    assert s.all_failed
    for key in (
        "mean_ttft_ms",
        "p99_ttft_ms",
        "mean_tpot_ms",
        "mean_itl_ms",
        "max_itl_ms",
        "mean_e2e_latency_ms",
        "mean_queue_ms",
    ):
        assert math.isnan(getattr(s, key)), key
    assert s.total_output_tokens == 0
    assert s.output_throughput == 0.0  # nothing delivered over a real duration
    assert math.isnan(s.to_dict()["mean_ttft_ms"])  # plain dict keeps NaN for comparisons
    d = s.to_json_dict()
    assert d["mean_ttft_ms"] is None
    json.dumps(d, allow_nan=False)
    back = RunSummary.from_dict(json.loads(json.dumps(d)))
    assert math.isnan(back.mean_ttft_ms) and back.errors_by_kind == s.errors_by_kind
    back2 = RunSummary.from_dict(json.loads(json.dumps(s.to_dict())))
    assert math.isnan(back2.mean_ttft_ms) and back2.completed == 0


def test_single_token_requests_have_no_tpot():
    one = rec(0, t_start=0.0, t_end=0.5, chunks=[0.4], tokens=[1], completion=1, expected=1)
    s = summarize(make_result([one]))
    assert s.completed == 1 and s.output_len_mismatches == 0
    assert s.mean_ttft_ms == pytest.approx(400.0)
    assert math.isnan(s.mean_tpot_ms) and math.isnan(s.mean_itl_ms)


def test_summary_round_trip_and_keys(summary):
    d = summary.to_dict()
    for key in (
        "duration",
        "completed",
        "total_input_tokens",
        "total_output_tokens",
        "request_throughput",
        "input_throughput",
        "output_throughput",
        "total_throughput",
        "mean_ttft_ms",
        "median_ttft_ms",
        "std_ttft_ms",
        "p99_ttft_ms",
        "mean_tpot_ms",
        "mean_itl_ms",
        "p95_itl_ms",
        "max_itl_ms",
        "mean_e2e_latency_ms",
        "concurrency",
        "max_concurrency",
    ):
        assert key in d, key
    back = RunSummary.from_dict(json.loads(json.dumps(summary.to_json_dict())))
    assert back.to_json_dict() == summary.to_json_dict()
    assert math.isnan(back.goodput)  # no SLO given: no goodput, not 0


def test_request_table():
    rows = request_table(make_result([A, B, C]))
    assert [r["ok"] for r in rows] == [True, True, False]
    assert rows[0]["ttft_ms"] == pytest.approx(1000.0)
    assert rows[1]["queue_ms"] == pytest.approx(500.0)
    assert rows[2]["ttft_ms"] is None and rows[2]["error_kind"] == "http_status"


def test_goodput_under_slos():
    # TTFTs 1.0, 2.0, 1.0 s; TPOTs 175, 166.7, 400 ms; E2E 1.7, 2.5, 1.8 s
    r = make_result([A, B, C, D, E])
    s = summarize(r, slo={"ttft_ms": 1500})
    assert s.goodput == pytest.approx(2 / 4.0)  # A and E
    assert s.goodput_ratio == pytest.approx(2 / 5)  # failed requests never meet an SLO
    assert s.slo == {"ttft_ms": 1500.0}
    s2 = summarize(r, slo={"ttft_ms": 2500, "tpot_ms": 200})
    assert s2.goodput == pytest.approx(2 / 4.0)  # A, B (E's TPOT is 400 ms)
    s3 = summarize(r, slo={"e2e_ms": 1750})
    assert s3.goodput == pytest.approx(1 / 4.0)
    s4 = summarize(r, slo={"itl_ms": 260})  # worst ITL: A 300, B 250, E 500 ms
    assert s4.goodput_ratio == pytest.approx(1 / 5)
    with pytest.raises(Exception, match="Unknown SLO"):
        summarize(r, slo={"latency": 5})
    with pytest.raises(Exception, match="positive"):
        summarize(r, slo={"ttft_ms": 0})


def test_peak_output_throughput_in_one_second_buckets():
    # chunks relative to the first dispatch at 0: A 1.0-1.6 s (5 tokens), B 2.5 (2) and 3.0 (2),
    # E 1.0/1.5/1.7 (1+1+1): bucket [1,2) holds 5 + 3 = 8 tokens
    r = make_result([A, B, C, D, E])
    assert peak_output_throughput(r) == pytest.approx(8.0)
    assert summarize(r).peak_output_throughput == pytest.approx(8.0)
    assert peak_output_throughput(r, bucket_s=4.0) == pytest.approx(12 / 4.0)
    # completions-style counts: the server's total lands on the last chunk
    F = rec(5, t_start=0.0, t_end=0.5, chunks=[0.2, 0.4], completion=6, expected=6)
    assert peak_output_throughput(make_result([F])) == pytest.approx(6.0)
    assert math.isnan(peak_output_throughput(make_result([C])))


def test_input_length_mismatch_and_run_problems():
    good = rec(
        0,
        t_start=0.0,
        t_end=1.0,
        chunks=[0.5, 1.0],
        tokens=[1, 2],
        completion=2,
        prompt_tokens=100,
        expected=2,
    )
    bad_in = rec(
        1,
        t_start=0.0,
        t_end=1.0,
        chunks=[0.5, 1.0],
        tokens=[1, 2],
        completion=2,
        prompt_tokens=101,
        expected=2,
    )
    bad_out = rec(
        2,
        t_start=0.0,
        t_end=1.0,
        chunks=[0.5, 1.0],
        tokens=[1, 2],
        completion=2,
        prompt_tokens=100,
        expected=3,
    )
    s = summarize(make_result([good, bad_in, bad_out, good]))
    assert s.input_len_mismatches == 1 and s.output_len_mismatches == 1
    assert s.mismatch_share == pytest.approx(0.5)
    problems = run_problems(s)  # default: no mismatch allowed
    assert len(problems) == 1 and "1 input, 1 output" in problems[0]
    assert run_problems(s, max_mismatch_share=0.5) == []
    assert run_problems(summarize(make_result([good]))) == []
    failed = run_problems(summarize(make_result([good, C])))
    assert failed == ["1 of 2 requests failed (http_status: 1); first http_status: boom"]


def test_aggregate_repeats_takes_medians_and_sums_errors():
    s1 = summarize(make_result([A, B, C, D, E]), slo={"ttft_ms": 1500})
    s2 = summarize(make_result([A, E]), slo={"ttft_ms": 1500})
    s3 = summarize(make_result([B]), slo={"ttft_ms": 1500})
    agg = aggregate_repeats([s1, s2, s3])
    for key in (
        "mean_ttft_ms",
        "p99_ttft_ms",
        "output_throughput",
        "duration",
        "goodput",
        "peak_output_throughput",
        "mean_itl_ms",
        "concurrency",
    ):
        vals = [getattr(s, key) for s in (s1, s2, s3)]
        assert getattr(agg, key) == pytest.approx(float(np.median(vals))), key
    assert agg.completed == 2  # median of 3, 2, 1
    assert agg.failed == 2 and agg.errors_by_kind == {"http_status": 1, "incomplete_stream": 1}
    assert agg.output_len_mismatches == 2  # B's mismatch in repeats 1 and 3
    assert agg.mismatch_share == pytest.approx(1.0)  # the worst repeat (3: B only)
    assert agg.repeats == 3 and agg.slo == {"ttft_ms": 1500.0}
    assert aggregate_repeats([s1]) is s1
    # a repeat without data does not drag the median to NaN
    none = summarize(make_result([C]))
    assert aggregate_repeats([s2, none]).mean_ttft_ms == pytest.approx(s2.mean_ttft_ms)
    assert math.isnan(aggregate_repeats([none, none]).mean_ttft_ms)
    json.dumps(agg.to_json_dict(), allow_nan=False)
    with pytest.raises(ValueError):
        aggregate_repeats([])


def test_queue_statistics():
    s = summarize(make_result([A, B, E]))
    assert s.median_queue_ms == pytest.approx(0.0)
    assert s.max_queue_ms == pytest.approx(500.0)
    assert s.p99_queue_ms == pytest.approx(np.percentile([0, 500, 0], 99))
