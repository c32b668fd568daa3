"""Trace replay in a real session: the shipped trace suite (a generated 1000-request trace in the
Mooncake format, with shared system prompts and multi-turn conversations; on the simulated pair
its first requests, as `make run` replays them) against sim-pp2 and its baseline sim-tp8 behind
the real router: every request completes, each prompt is exactly the trace's length, the
prefill's prefix cache serves the shared prefixes (its own /metrics say so), and the report shows
where TTFT goes."""

from __future__ import annotations

import json

import pytest

from pytest_pd.prometheus import series_total, server_summary
from pytest_pd.workload.trace import read_trace
from tests.helpers import REPO, assert_nothing_left, run_session, sim_cluster_copy

pytestmark = pytest.mark.serial  # the shipped trace suite's verdicts on measured timing

TRACE = REPO / "suites" / "traces" / "synthetic-1000.jsonl"


def test_shipped_trace_suite_replays_every_request_with_cache_hits(pytester: pytest.Pytester):
    clusters = pytester.path / "clusters"
    for name in ("sim-pp2", "sim-tp8"):
        sim_cluster_copy(name, clusters, sim={"speedup": 20})
    result, out = run_session(pytester, clusters, str(REPO / "suites" / "test_pd_trace.py"))
    text = result.stdout.str()
    assert result.ret == 0, text
    assert "pass: prefix_cache_hit_rate" in text, text
    assert len(read_trace(TRACE)) == 1000
    for path in sorted((out / "results").glob("*.json")):
        data = json.loads(path.read_text())
        m = data["metrics"]
        n = data["workload"]["num_requests"]  # the suite's demo size for sim-* clusters
        assert 50 <= n < 1000, n
        rows = read_trace(TRACE)[:n]
        assert m["completed"] == n and m["failed"] == 0 and m["not_sent"] == 0, m
        assert m["input_len_mismatches"] == 0 and m["output_len_mismatches"] == 0
        assert m["total_input_tokens"] == sum(r.input_len for r in rows)
        assert m["total_output_tokens"] == sum(r.output_len for r in rows)
        # the hits as the prefill server counts them (SGLang's names)
        rows_by_worker = server_summary(data["telemetry"]["server"])
        hits = series_total(
            rows_by_worker, "sglang:prefill_effective_tokens_total", ("prefill",), mode="device_hit"
        )
        assert hits > 0.3 * m["total_input_tokens"], hits
        assert m["prefix_cache_hit_rate"] > 0.3
        # arrivals followed the trace: the run lasted from its first to its last arrival, and the
        # last requests' time after it (scaled back to real time; 80 s allowed, as for all 1000)
        span = (rows[-1].timestamp_ms - rows[0].timestamp_ms) / 1000
        assert span <= m["duration"] <= span + 80, (m["duration"], span)
        assert data["ttft_breakdown"]["missing"] == {}
    assert 'data-chart="ttft-breakdown"' in (out / "report.html").read_text()
    assert_nothing_left(out / "runs")
