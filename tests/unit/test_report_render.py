"""The report renders (no clusters): escaping everywhere, the failing column and row in red,
charts as inline PNGs, the trend with its bound, telemetry availability notes, log tails."""

from __future__ import annotations

import base64
import re
from html import unescape

from pytest_pd.judge.comparison import compare
from pytest_pd.judge.thresholds import bounds_from_marker
from pytest_pd.record import ClusterInfo, RunRecord, Simulated, encode_requests, migrate
from pytest_pd.report import html, html_charts, series, summary
from pytest_pd.ttft_breakdown import RequestTimes, ServerTimes, ttft_breakdown
from pytest_pd.workload.spec import Workload
from tests.helpers.records import run_record

KNOWN = {"mean_ttft_ms", "output_throughput", "mean_tpot_ms", "mean_e2e_latency_ms"}
PP2 = {
    "mean_ttft_ms": 5010.0,
    "output_throughput": 492.9,
    "mean_tpot_ms": 36.4,
    "mean_e2e_latency_ms": 31350.0,
    "completed": 2,
    "failed": 0,
}
TP8 = {
    "mean_ttft_ms": 3590.0,
    "output_throughput": 488.7,
    "mean_tpot_ms": 27.6,
    "mean_e2e_latency_ms": 31150.0,
    "completed": 2,
    "failed": 0,
}
EVIL = "<script>alert(1)</script>"


def run_view(name: str, speedup: float = 10.0) -> RunRecord:
    records = []
    for i in range(2):
        t0 = 100.0 + i * 0.1
        records.append(
            {
                "index": i,
                "t_start": t0,
                "t_first_token": t0 + 0.2,
                "t_end": t0 + 0.5,
                "chunk_times": [t0 + 0.2 + 0.1 * k for k in range(4)],
                "chunk_tokens": [1, 2, 3, 4],
                "completion_tokens": 4,
                "error_kind": None,
            }
        )
    return RunRecord(
        cluster=ClusterInfo(
            name=name,
            file=f"/c/{name}.yaml",
            spec={"name": name, "env": {"HF_TOKEN": "***redacted***"}, "x": None},
            commands=f"python -m sglang.launch_server --served {EVIL}",
        ),
        workload=Workload(),
        simulated=Simulated(speedup=speedup),
        requests=[encode_requests({"started": 100.0, "records": records})],
        telemetry={
            "time_scale": speedup,
            "gauges": {"running": "sglang:num_running_reqs"},
            "server": {
                "decode-0": {
                    "samples": [
                        {
                            "t": 0.0,
                            "values": {"sglang:num_running_reqs": 0.0, "sglang:generation_tokens_total": 5.0},
                        },
                        {
                            "t": 0.1,
                            "values": {
                                "sglang:num_running_reqs": 2.0,
                                "sglang:generation_tokens_total": 13.0,
                            },
                        },
                    ]
                }
            },
            "gpu": {"node-a": {"available": False, "reason": f"nvidia-smi not found {EVIL}"}},
        },
    )


def comparison():
    b = []
    for metric, kw in [("mean_ttft_ms", {"max_ratio": 1.5}), ("mean_tpot_ms", {"max_ratio": 1.05})]:
        b += bounds_from_marker((metric,), kw, KNOWN)
    return compare(
        f"test[{EVIL}]",
        f"w{EVIL}",
        run_record(f"pp2{EVIL}", "TP=4, PP=2", PP2),
        run_record("tp8", "TP=8", TP8),
        b,
        last=run_record("pp2", "", {**PP2, "mean_tpot_ms": 26.0}),
    )


def test_failing_column_and_row_are_red_with_values_and_bound():
    out = html.comparison_table(comparison())
    # TPOT column: candidate, baseline, delta, bound, verdict all red; and the verdict-table cell
    assert out.count('class="num pd-fail"') == 5 + 1
    assert re.search(
        r'<tr class="pd-fail-row"><td>mean_tpot_ms</td><td class="num">36.4</td>'
        r'<td class="num">27.6</td><td class="num">1.319×</td>'
        r'<td class="num">≤ 1.05× baseline</td>',
        out,
    )
    assert "<script>" not in out and "&lt;script&gt;" in out


def test_history_table_has_vs_last_run_column():
    out = html.history_section(comparison())
    assert "<th>vs last run</th>" in out and "+40.0 %" in out and "regression (warning)" in out


def test_details_have_inline_charts_trend_bound_telemetry_and_escaped_logs():
    comp = comparison()
    trend = [run_record("pp2", "", {**PP2, "mean_tpot_ms": 26.0 + i}, started_at=1.8e9 + i) for i in range(3)]
    tails = {"pp2": {"decode-0": f"line\n{EVIL}\n", "router": "ok"}}
    out = html.details_section(comp, run_view("pp2"), run_view("tp8"), trend, tails)
    kinds = re.findall(r'data-chart="([^"]+)"', out)
    assert kinds == ["cdf", "timeline", "tokens-per-s", "trend", "server-metrics", "server-metrics"]
    assert 'data-points="3"' in out
    for b64 in re.findall(r'src="data:image/png;base64,([^"]+)"', out):
        assert base64.b64decode(b64).startswith(b"\x89PNG")
    assert "GPU telemetry not available on node-a: nvidia-smi not found &lt;script&gt;" in out
    assert "<script>" not in out
    assert "decode-0 (last lines of its log)" in out


def test_trend_follows_every_bounded_metric_too():
    """A bound on a metric outside the seed table's (a capacity, a hit rate) gets its own panel."""
    bounds = bounds_from_marker(("prefix_cache_hit_rate",), {"min": 0.3}, {"prefix_cache_hit_rate"})
    comp = compare("t", "w", run_record("pp2", "", PP2), run_record("tp8", "", TP8), bounds)
    trend = [
        run_record("pp2", "", {**PP2, "prefix_cache_hit_rate": 0.4 + i / 100}, started_at=1.8e9 + i)
        for i in range(3)
    ]
    out = html_charts.trend_chart(comp, trend)
    shown = re.search(r'data-metrics="([^"]+)"', out).group(1).split(",")
    assert shown == [
        "mean_ttft_ms",
        "output_throughput",
        "mean_tpot_ms",
        "mean_e2e_latency_ms",
        "prefix_cache_hit_rate",
    ]


def test_prediction_error_has_its_own_trend_when_runs_were_predicted():
    comp = comparison()

    def predicted(i: int, error: float):
        stats = {
            s: {"predicted": 1.0, "measured": 1.0, "error": error}
            for s in ("mean_ttft_ms", "output_throughput")
        }
        return run_record(
            "pp2", "", PP2, started_at=1.8e9 + i, prediction={"profile": "p.yaml", "stats": stats}
        )

    trend = [run_record("pp2", "", PP2, started_at=1.8e9 - 1), predicted(0, 0.02), predicted(1, 0.3)]
    out = html.details_section(comp, run_view("pp2"), run_view("tp8"), trend)
    kinds = re.findall(r'data-chart="([^"]+)"', out)
    assert (
        kinds.count("prediction-trend") == 1 and kinds.index("prediction-trend") == kinds.index("trend") + 1
    )
    assert "prediction error of the last 2 predicted runs of pp2" in out
    plain = [run_record("pp2", "", PP2, started_at=1.8e9)]
    assert "prediction-trend" not in html.details_section(comp, run_view("pp2"), run_view("tp8"), plain)


def test_summary_section_header_and_cluster_files_escaped_and_redacted():
    comp = comparison()
    clusters = html.cluster_files([run_view("pp2"), run_view("tp8")])
    header = {
        "cluster": f"pp2 {EVIL}",
        "model": "m",
        "versions": {"pytest-pd": "0.1"},
        "hardware": "simulated",
    }
    out = html.summary_section([comp], header, ["<p>details</p>"], clusters)
    assert "<script>" not in out
    assert "<dt>cluster</dt><dd>pp2 &lt;script&gt;" in out
    assert "HF_TOKEN: &#x27;***redacted***&#x27;" in out or "HF_TOKEN: '***redacted***'" in out
    assert "x: null" not in out  # unset keys left out
    assert out.index("PD acceptance") < out.index("<p>details</p>") < out.index("Cluster files")


def test_series_are_scaled_to_model_time():
    view = run_view("pp2", speedup=10.0)
    ttft, e2e = series.latencies(view)
    assert [round(t, 6) for t in ttft] == [2.0, 2.0] and [round(e, 6) for e in e2e] == [5.0, 5.0]
    tl = series.timeline(view)
    assert [tuple(round(x, 6) for x in row) for row in tl] == [(0.0, 2.0, 5.0), (1.0, 3.0, 6.0)]
    rate = series.output_rate(view, bucket_s=1.0)
    assert sum(r for _, r in rate) == 8  # 8 tokens in 1 s buckets
    assert series.server_gauges(view.telemetry)["decode-0 running"] == [(0.0, 0.0), (1.0, 2.0)]
    older = migrate({**view.model_dump(mode="json"), "telemetry": {**view.telemetry, "gauges": None}})
    del older["telemetry"]["gauges"]  # recorded before engines named their gauges: SGLang's
    assert series.server_gauges(migrate(older)["telemetry"])["decode-0 running"] == [(0.0, 0.0), (1.0, 2.0)]


def test_router_metrics_get_their_own_table():
    run = run_view("pp2")
    health = "smg_worker_health{worker=http://127.0.0.1:31001}"
    requests = "smg_router_requests_total{endpoint=generate}"
    run.telemetry["server"]["router"] = {
        "url": "http://127.0.0.1:31200/metrics",
        "samples": [
            {"t": 0.0, "values": {health: 1.0, requests: 1.0}},
            {"t": 0.1, "values": {health: 0.0, requests: 33.0}},
        ],
    }
    out = html_charts.telemetry_section([("pp2", run)])
    workers, router = out.split("Router-side metrics", 1)
    assert "decode-0" in workers and "smg_" not in workers  # the workers' table has no router rows
    assert "<th>router</th>" in router and "sglang:" not in router
    assert re.search(r"smg_router_requests_total\{endpoint=generate\}</td><td[^>]*>32<", router)
    assert re.search(r"smg_worker_health\{worker=http://127.0.0.1:31001\}</td><td[^>]*>0<", router)


def test_notes_say_how_tokens_were_counted_where_not_by_the_server():
    b = bounds_from_marker(("mean_ttft_ms",), {"max_ratio": 1.5}, KNOWN)
    candidate = run_record("pp2", "", {**PP2, "token_count_source": "tokenizer", "input_len_unchecked": 8})
    baseline = run_record("tp8", "", {**TP8, "token_count_source": "server per chunk"})
    notes = summary.other_verdicts(compare("t", "w", candidate, baseline, b))
    assert "note: pp2: tokens per chunk counted with the tokenizer from each chunk's text" in "\n".join(notes)
    assert any(
        n.startswith("note: pp2: input lengths not checked") and n.endswith("(8 requests)") for n in notes
    )
    assert not any("tp8" in n for n in notes)  # the server counted: nothing to say
    html_notes = html.comparison_table(compare("t", "w", candidate, baseline, b))
    assert "tokens per chunk counted with the tokenizer" in html_notes


def test_a_baseline_on_another_engine_is_said_plainly():
    from pytest_pd.record import Environment

    def on(engine: str, version: str, name: str) -> RunRecord:
        run = run_record(name, "TP=1", PP2)
        run.cluster = ClusterInfo(name=name, engine=engine)
        run.environment = Environment(engines={"prefill-0": version, "decode-0": version})
        return run

    b = bounds_from_marker(("mean_ttft_ms",), {"max_ratio": 1.5}, KNOWN)
    comp = compare(
        "t", "w", on("sglang", "sglang 0.5.23", "cpu-1p1d"), on("vllm", "vllm 0.32.0", "cpu-vllm-1p1d"), b
    )
    want = (
        "engines differ: candidate sglang 0.5.23, baseline vllm 0.32.0; "
        "the ratios compare engines as well as topologies"
    )
    assert want in "\n".join(summary.terminal_lines(comp))
    rows = summary.table_rows(comp)
    assert [r[0] for r in rows[1:3]] == [
        "cpu-1p1d (candidate, sglang 0.5.23)",
        "cpu-vllm-1p1d (baseline, vllm 0.32.0)",
    ]
    assert want in html.comparison_table(comp)
    same = compare("t", "w", on("sglang", "sglang 0.5.23", "a"), on("sglang", "sglang 0.5.23", "b"), b)
    assert "engines differ" not in "\n".join(summary.terminal_lines(same))
    assert summary.table_rows(same)[1][0] == "a (candidate)"


def test_a_baseline_measured_again_because_its_stored_run_was_launched_otherwise_says_so():
    b = bounds_from_marker(("mean_ttft_ms",), {"max_ratio": 1.5}, KNOWN)
    cand, base = run_record("sim-pp2", "TP=4, PP=2", PP2), run_record("sim-tp8", "TP=8", PP2)
    cand.session = base.session = "s1"
    why = "1 stored run(s) launched otherwise than t.yaml launches sim-tp8 now (--tp-size (decode-0): 4 -> 8)"
    comp = compare("t", "w", cand, base, b, baseline_source=f"live (no usable stored run: {why})")
    assert f"baseline: sim-tp8, measured in this session ({why})\n" in "\n".join(
        [*summary.terminal_lines(comp), ""]
    )
    plain = compare("t", "w", cand, base, b, baseline_source="live (no usable stored run: no stored run)")
    assert "baseline: sim-tp8, measured in this session\n" in "\n".join([*summary.terminal_lines(plain), ""])


def test_the_ttft_breakdown_says_what_each_part_rests_on():
    """Parts measured per request, parts split from the prefill's run means (fitted), parts from
    run means only, a part not measured: each said once, for the sides it holds for."""
    per_request = ttft_breakdown(
        ServerTimes(queueing=0.1, prefill=0.5, kv_transfer=0.124, server_ttft=0.6),
        None,
        RequestTimes(32, 0.626, 0.6, 0.58),
    )
    run_means = ttft_breakdown(
        ServerTimes(
            queueing=None,
            prefill=0.5,
            kv_transfer=0.1,
            server_ttft=0.7,
            missing={"queueing": "no queue histogram"},
        ),
        0.8,
    )
    comp = comparison()
    comp.candidate.ttft_breakdown, comp.baseline.ttft_breakdown = per_request, run_means
    text = unescape(re.sub(r"<[^>]+>", " ", html_charts.ttft_breakdown_chart(comp)))
    assert (
        "measured per request (the answering server's own timing in each of 32 responses): client + router, decode: hand-off + first step"
        in text
    )
    assert "scaled by 0.80 to fit" in text
    assert "from the servers' run means (/metrics): client + router, prefill compute, KV transfer" in text
    assert "queueing (prefill) not measured: no queue histogram" in text
    assert text.count("split in proportion to the prefill servers") == 1
