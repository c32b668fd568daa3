"""End to end: pytest sessions (in subprocesses) bring up simulated PD clusters behind the real
sglang-router, measure, judge the threshold markers, report, and leave nothing running."""

from __future__ import annotations

import json
import re
import textwrap

import pytest

from tests.helpers import REPO, SEED_BOUNDS_SPEEDUP, assert_nothing_left, run_session, sim_cluster_copy

pytestmark = pytest.mark.serial  # the shipped suite's verdicts on measured timing

SMALL_SUITE = """
import pytest
from pytest_pd.workload.spec import Workload

SMALL = Workload(input_len=1500, output_len=40, concurrency=4, num_requests=8)

{markers}
@pytest.mark.parametrize("pd_workload", [SMALL], ids=lambda w: w.id)
def test_small(pd_run):
    assert pd_run.candidate.metrics["completed"] == 8

def test_after(pd_cluster):
    assert pd_cluster.router_url.startswith("http://127.0.0.1:")
"""


def test_seed_suite_passes_on_sim_clusters_through_real_router(pytester, tmp_path):
    """The shipped suite, unchanged, against sim-pp2 vs sim-tp8 (fresh ports)."""
    folder = tmp_path / "clusters"
    for name in ("sim-pp2", "sim-tp8"):
        sim_cluster_copy(name, folder, sim={"speedup": SEED_BOUNDS_SPEEDUP})
    result, out = run_session(pytester, folder, str(REPO / "suites" / "test_pd_acceptance.py"), "-rs")
    text = result.stdout.str()
    assert result.ret == 0, text
    result.assert_outcomes(passed=1, skipped=3)  # the cpu-* workloads are not for sim clusters
    assert "for clusters cpu-*; this session runs sim-pp2" in text
    assert "pytest-pd: candidate vs baseline" in text
    assert re.search(r"sim-pp2 \(candidate, simulated ×\d+\)\s+TP=4, PP=2", text), text
    assert re.search(r"sim-tp8 \(baseline, simulated ×\d+\)\s+TP=8", text), text
    report = (out / "report.html").read_text()
    assert "PD acceptance: candidate vs baseline" in report
    for header in (
        "TTFT (s)",
        "throughput (tok/s)",
        "TPOT (ms)",
        "mean latency (s)",
        "prefill strategy",
        "≤ 1.5× baseline",
    ):
        assert header in report
    results = sorted((out / "results").glob("*.json"))
    assert [p.name.split("-", 1)[1] for p in results] == [
        "sim-pp2-in6000-out1000-c16-n32.json",
        "sim-tp8-in6000-out1000-c16-n32.json",
    ]
    for path in results:
        data = json.loads(path.read_text())
        m = data["metrics"]
        assert m["completed"] == 32 and m["failed"] == 0
        assert m["total_input_tokens"] == 32 * 6000 and m["total_output_tokens"] == 32 * 1000
        for key in (
            "mean_ttft_ms",
            "median_ttft_ms",
            "p99_ttft_ms",
            "mean_tpot_ms",
            "mean_itl_ms",
            "mean_e2e_latency_ms",
            "output_throughput",
            "input_throughput",
            "request_throughput",
            "duration",
        ):
            assert m[key] > 0, key
        assert data["server_info"]["decode-0"]["disaggregation_mode"] == "decode"
    # where TTFT goes: the parts add up to the client's mean TTFT, and PP2's extra TTFT over TP8
    # is in its prefill (the pipeline) and KV transfer (a handshake per PP rank), not in queueing
    pp2, tp8 = (json.loads(p.read_text())["ttft_breakdown"] for p in results)
    for b in (pp2, tp8):
        assert b["missing"] == {} and all(v >= 0 for v in b["parts"].values()), b
        # the simulated decode times every request in its meta_info, as SGLang's does
        assert b["requests"] == 32 and b["sources"]["client_router"] == "per request", b
        assert sum(b["parts"].values()) == pytest.approx(b["ttft_s"], rel=1e-9)
    extra = {k: pp2["parts"][k] - tp8["parts"][k] for k in pp2["parts"]}
    gap = pp2["ttft_s"] - tp8["ttft_s"]
    assert gap > 0.5 and extra["prefill"] > 0.4 * gap and extra["prefill"] == max(extra.values()), extra
    assert 'data-chart="ttft-breakdown" data-sides="2"' in report
    assert_nothing_left(out / "runs")


def test_violated_bound_fails_with_numbers_and_still_tears_down(pytester, sim_clusters):
    markers = (
        '@pytest.mark.pd_threshold("mean_ttft_ms", max_ratio=0.01)\n'
        '@pytest.mark.pd_threshold("output_throughput", min=1)'
    )
    pytester.makepyfile(test_suite=SMALL_SUITE.format(markers=markers))
    result, out = run_session(pytester, sim_clusters)
    result.assert_outcomes(failed=1, passed=1)
    text = result.stdout.str()
    assert re.search(
        r"mean_ttft_ms: candidate [\d.]+ vs baseline [\d.]+ = [\d.]+× "
        r"\([+-][\d.]+ %\), bound ≤ 0.01× baseline → FAIL",
        text,
    ), text
    assert "output_throughput" not in text.split("short test summary")[-1]
    assert_nothing_left(out / "runs")


def test_absolute_bound_without_baseline_runs_candidate_only(pytester, tmp_path):
    folder = tmp_path / "clusters"
    sim_cluster_copy("sim-tp8", folder)
    pytester.makepyfile(
        test_suite=SMALL_SUITE.format(markers='@pytest.mark.pd_threshold("mean_ttft_ms", max=600000)')
    )
    result, out = run_session(pytester, folder, cluster="sim-tp8")
    result.assert_outcomes(passed=2)
    assert len(list((out / "results").glob("*.json"))) == 1
    assert_nothing_left(out / "runs")


def test_crashing_server_fails_fast_with_log_tail(pytester, tmp_path):
    """A server that dies during bring-up: clear error naming it, later tests fail at once."""
    folder = tmp_path / "clusters"
    sim_cluster_copy("sim-tp8", folder)
    sim_cluster_copy(
        "sim-pp2", folder, server_defaults={"health_timeout_s": 60, "extra_args": ["--port", "not-a-port"]}
    )
    pytester.makepyfile(test_suite=SMALL_SUITE.format(markers=""))
    result, out = run_session(pytester, folder, "--durations=0")
    result.assert_outcomes(errors=2)
    text = result.stdout.str()
    assert "BringUpError" in text and "exited with code" in text and "not-a-port" in text
    assert "Traceback" not in text
    assert_nothing_left(out / "runs")


def test_broken_cluster_file_is_one_paragraph(pytester, tmp_path):
    folder = tmp_path / "clusters"
    path = sim_cluster_copy("sim-pp2", folder)
    path.write_text(path.read_text().replace("tp: 4", "tp: four"))
    pytester.makepyfile(test_suite=SMALL_SUITE.format(markers=""))
    result, _ = run_session(pytester, folder)
    result.assert_outcomes(errors=2)
    text = result.stdout.str()
    assert re.search(
        r"sim-pp2.yaml is invalid .*\n.*line \d+, prefill\[0\]\.tp: expected a valid "
        r"integer, got 'four'",
        text,
    ), text
    assert "Traceback" not in text and "pydantic" not in text


def test_marker_without_pd_run_is_an_error(pytester, sim_clusters):
    pytester.makepyfile(
        test_suite=textwrap.dedent("""
        import pytest
        @pytest.mark.pd_threshold("mean_ttft_ms", max=1)
        def test_x():
            pass
        @pytest.mark.pd_threshold("mean_tttft_ms", max=1)
        def test_y(pd_run):
            pass
    """)
    )
    result, _ = run_session(pytester, sim_clusters)
    result.assert_outcomes(errors=2)
    text = result.stdout.str()
    assert "markers need the pd_run fixture" in text and "unknown metric 'mean_tttft_ms'" in text


def test_only_selected_workloads_are_measured(pytester, tmp_path):
    """`-k` deselects a workload: it is measured on neither cluster (each bring-up runs the
    workloads of the selected tests only)."""
    folder = tmp_path / "clusters"
    sim_cluster_copy("sim-tp8", folder)
    pytester.makepyfile(
        test_suite="""
        import pytest
        from pytest_pd.workload.spec import Workload
        A = Workload(input_len=800, output_len=8, concurrency=4, num_requests=4)
        B = Workload(input_len=900, output_len=8, concurrency=4, num_requests=4)
        @pytest.mark.pd_threshold("mean_ttft_ms", max=600000)
        @pytest.mark.parametrize("pd_workload", [A, B], ids=lambda w: w.id)
        def test_w(pd_run):
            pass
    """
    )
    result, out = run_session(pytester, folder, "-k", "in800", cluster="sim-tp8")
    result.assert_outcomes(passed=1, deselected=1)
    stored = [p.name for p in (out / "results").glob("*.json")]
    assert len(stored) == 1 and "in800-" in stored[0], stored
    assert_nothing_left(out / "runs")


def test_workloads_for_other_clusters_are_skipped_and_not_measured(pytester, tmp_path):
    """``pd_clusters`` on a test or on one pytest.param: skipped (with the reason) on other
    clusters, and never measured there."""
    folder = tmp_path / "clusters"
    sim_cluster_copy("sim-tp8", folder)
    pytester.makepyfile(
        test_suite="""
        import pytest
        from pytest_pd.workload.spec import Workload
        A = Workload(input_len=800, output_len=8, concurrency=4, num_requests=4)
        B = Workload(input_len=900, output_len=8, concurrency=4, num_requests=4)
        @pytest.mark.pd_threshold("mean_ttft_ms", max=600000)
        @pytest.mark.parametrize("pd_workload", [
            A, pytest.param(B, marks=pytest.mark.pd_clusters("cpu-*", "h20-*"))],
            ids=lambda w: w.id)
        def test_w(pd_run):
            pass

        @pytest.mark.pd_clusters(exclude=["sim-*"])
        def test_not_on_sims(pd_cluster):
            pass
    """
    )
    result, out = run_session(pytester, folder, "-rs", cluster="sim-tp8")
    result.assert_outcomes(passed=1, skipped=2)
    text = result.stdout.str()
    assert "for clusters cpu-*, h20-*; this session runs sim-tp8" in text, text
    assert "not for clusters sim-*; this session runs sim-tp8" in text, text
    stored = [p.name for p in (out / "results").glob("*.json")]
    assert len(stored) == 1 and "in800-" in stored[0], stored


def test_xdist_session_reports_on_the_controller(pytester, sim_clusters):
    """`-n 2`: the cluster tests run on one worker (one bring-up each); the controller prints the
    comparison and renders the report's details (charts, telemetry) from the results store."""
    pytester.makepyfile(
        test_suite=SMALL_SUITE.format(markers='@pytest.mark.pd_threshold("mean_ttft_ms", max_ratio=4)')
    )
    pytester.makepyfile(test_other="def test_plain():\n    assert True\n")
    result, out = run_session(pytester, sim_clusters, "-n", "2")
    result.assert_outcomes(passed=3)
    text = result.stdout.str()
    assert (
        "pytest-pd: candidate vs baseline" in text and "baseline: sim-tp8, measured in this session" in text
    )
    # run folders are <UTC time>-<cluster>[-N]; N when two bring-ups of a cluster share a second
    bring_ups = sorted(
        re.sub(r"-\d+$", "", p.name.split("-", 1)[1]) for p in (out / "runs").iterdir() if p.is_dir()
    )
    # one worker ran every cluster test in order, as without xdist: candidate, baseline, then the
    # candidate again for test_after's pd_cluster
    assert bring_ups == ["sim-pp2", "sim-pp2", "sim-tp8"], bring_ups
    report = (out / "report.html").read_text()
    for chart in ("cdf", "timeline", "tokens-per-s", "trend", "server-metrics"):
        assert f'data-chart="{chart}"' in report, chart
    assert "<dt>baseline</dt><dd>sim-tp8: live" in report
    assert len(list((out / "results").glob("*.json"))) == 2
    assert_nothing_left(out / "runs")
