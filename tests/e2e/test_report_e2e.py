"""End to end, one chain of real pytest sessions against simulated clusters sharing a results
store: a missing stored baseline (error with the command that makes one), that very command,
a second run (stored baseline, repeats, trend with two points, "vs last run"), and a deliberately
slowed candidate (red TPOT row, values, bound, server log tail; JUnit failure message). The last
report is then opened in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from pytest_pd.record import SCHEMA_VERSION
from tests.helpers import REPO, assert_nothing_left, sim_cluster_copy
from tests.helpers.browser import CHROMIUM, inspect_report

pytestmark = pytest.mark.serial  # a slowed candidate's TPOT judged against a bound

SUITE = textwrap.dedent("""
    import pytest
    from pytest_pd.workload.spec import Workload

    SMALL = Workload(input_len=1500, output_len=40, concurrency=4, num_requests=8)

    @pytest.mark.pd_threshold("mean_ttft_ms", max_ratio=4)
    @pytest.mark.pd_threshold("output_throughput", min_ratio=0.2)
    # sim-pp2's TPOT is ~1.3x sim-tp8's; 2.2x leaves room for the repeats' noise interval, and
    # the slowed decode (step 4, 3x) lands near 3.8x, a clear FAIL
    @pytest.mark.pd_threshold("mean_tpot_ms", max_ratio=2.2)
    @pytest.mark.parametrize("pd_workload", [SMALL], ids=lambda w: w.id)
    def test_small(pd_run):
        assert pd_run.candidate.metrics["completed"] == 8
""")


@dataclass
class Session:
    args: list[str]
    ret: int
    out: str
    report: Path


def _pytest(cwd: Path, args: list[str], env: dict[str, str] | None = None) -> Session:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )
    html = next((a.split("=", 1)[1] for a in args if a.startswith("--html=")), "report.html")
    return Session(args, done.returncode, done.stdout + done.stderr, cwd / html)


def fresh_ports(folder: Path) -> None:
    sim_cluster_copy("sim-pp2", folder)
    sim_cluster_copy("sim-tp8", folder)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Session | Path]:
    work = tmp_path_factory.mktemp("chain")
    clusters, slow = work / "clusters", work / "slow-clusters"
    fresh_ports(clusters)
    (work / "test_suite.py").write_text(SUITE)
    common = ["--pd-results-dir=results", "--pd-run-dir=runs", "-p", "no:cacheprovider"]
    out: dict[str, Session | Path] = {"work": work}

    # 1. the shipped suite, stored baseline demanded, none there: fails before any bring-up
    out["missing"] = _pytest(
        REPO,
        [
            "suites/",
            "--cluster=sim-pp2",
            f"--cluster-dir={clusters}",
            f"--pd-results-dir={work / 'empty-results'}",
            f"--pd-run-dir={work / 'runs0'}",
            f"--html={work / 'r0.html'}",
            "-p",
            "no:cacheprovider",
            "--pd-baseline=stored",
        ],
    )
    # 2. the same with the small suite; then the command its message prints, verbatim
    first = _pytest(
        work,
        [
            "test_suite.py",
            "--cluster=sim-pp2",
            "--cluster-dir=clusters",
            "--html=r1.html",
            *common,
            "--pd-baseline=stored",
        ],
    )
    out["missing_small"] = first
    command = re.search(r"^\s+(pytest .*--pd-baseline=live --pd-save-baseline)$", first.out, re.M)
    assert command, first.out
    fresh_ports(clusters)  # ports picked long before a bring-up may have been taken meanwhile
    out["create"] = _pytest(work, shlex.split(command.group(1))[1:])
    # 3. a second run: stored baseline (the default now), three repeats, history
    fresh_ports(clusters)
    out["second"] = _pytest(
        work,
        [
            "test_suite.py",
            "--cluster=sim-pp2",
            "--cluster-dir=clusters",
            "--html=r2.html",
            "--pd-repeats=3",
            "--pd-slo=ttft_ms=60000,tpot_ms=1",
            *common,
        ],
    )
    # 4. the slowed candidate against the stored baseline: the same sim-pp2 (same name, so its
    # history continues) with the decode worker slowed 3× by the sim's fault; fresh ports now
    sim_cluster_copy("sim-pp2", slow, sim={"speedup": 10})
    data = yaml.safe_load((slow / "sim-pp2.yaml").read_text())
    data["decode"][0]["sim"] = {"fault": "slow", "fault_after_requests": 0, "fault_slowdown": 3.0}
    (slow / "sim-pp2.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    (slow / "sim-tp8.yaml").write_text((clusters / "sim-tp8.yaml").read_text())
    out["slow"] = _pytest(
        work,
        [
            "test_suite.py",
            "--cluster=sim-pp2",
            "--cluster-dir=slow-clusters",
            "--html=r3.html",
            "--self-contained-html",
            "--junitxml=junit.xml",
            *common,
        ],
        env={"GITHUB_STEP_SUMMARY": str(work / "summary.md")},
    )
    return out


def test_stored_baseline_missing_prints_the_command_that_makes_one(chain):
    s = chain["missing"]
    assert s.ret != 0, s.out
    assert "no stored baseline for sim-pp2" in s.out, s.out
    expected = (
        f"pytest suites/ --cluster=sim-pp2 --cluster-dir={chain['work'] / 'clusters'} "
        f"--pd-results-dir={chain['work'] / 'empty-results'} --pd-run-dir="
        f"{chain['work'] / 'runs0'} --html={chain['work'] / 'r0.html'} -p no:cacheprovider "
        "--pd-baseline=live --pd-save-baseline"
    )
    assert expected in s.out, s.out
    assert "Traceback" not in s.out
    assert not (chain["work"] / "runs0").exists()  # failed before bringing anything up


def test_the_printed_command_creates_a_marked_baseline(chain):
    s = chain["create"]
    assert s.ret == 0, s.out
    assert "baseline: sim-tp8, measured in this session" in s.out
    stored = [json.loads(p.read_text()) for p in sorted((chain["work"] / "results").glob("*.json"))]
    assert all(d["schema_version"] == SCHEMA_VERSION and d["failure"] is None for d in stored)
    marked = [d["cluster"]["name"] for d in stored if d["baseline_mark"]]
    assert sorted(marked) == ["sim-pp2", "sim-tp8"]  # that session's two runs; later ones are not


def test_second_run_uses_stored_baseline_and_shows_history(chain):
    s = chain["second"]
    assert s.ret == 0, s.out
    assert re.search(r"baseline: sim-tp8, stored run .*sim-tp8-in1500-out40-c4-n8\.json", s.out), s.out
    assert "sim-tp8: ready" not in s.out  # the baseline cluster was not brought up
    assert "vs last run:" in s.out and re.search(r"mean_tpot_ms\s+[\d.]+\s+[\d.]+\s+[+-][\d.]+ %", s.out)
    assert "[95 % CI" in s.out  # repeats give intervals
    html = s.report.read_text()
    assert "<th>vs last run</th>" in html
    trend = re.search(r'<img class="pd-chart" data-chart="trend" data-points="(\d+)"', html)
    assert trend and trend.group(1) == "2", "the trend chart should have two points"
    for kind in ("cdf", "timeline", "tokens-per-s", "server-metrics"):
        assert f'data-chart="{kind}"' in html, kind
    assert "GPU telemetry not available on prefill-node: simulated host" in html
    for label in ("cluster", "baseline", "model", "versions", "commit", "date", "hardware"):
        assert f"<dt>{label}</dt>" in html
    # the results file: repeats, records, telemetry, versions, resolved cluster and commands
    second = sorted((chain["work"] / "results").glob("*sim-pp2*.json"))[1]
    data = json.loads(second.read_text())
    assert len(data["repeats"]) == 3 and data["metrics"]["repeats"] == 3
    assert len(data["requests"]) == 3 and data["requests"][0]["encoding"] == "gzip+base64+json"
    assert data["environment"]["engines"]["decode-0"] == "sim (pytest-pd)"
    assert data["telemetry"]["server"]["decode-0"]["samples"]
    assert "sglang_router.launch_router" in data["cluster"]["commands"]
    assert data["host"] and data["started_at_iso"].endswith("Z")
    # SLOs are in real time: TTFT ≤ 60 s always holds, TPOT ≤ 1 ms never does
    assert data["slo"] == {"ttft_ms": 60000.0, "tpot_ms": 1.0} == data["metrics"]["slo"]
    assert data["metrics"]["goodput_ratio"] == 0.0 and data["metrics"]["goodput"] == 0.0


def test_slowed_candidate_fails_tpot_with_red_row_values_bound_and_log_tail(chain):
    s = chain["slow"]
    assert s.ret == 1, s.out
    m = re.search(
        r"mean_tpot_ms: candidate ([\d.]+) vs baseline ([\d.]+) = ([\d.]+)× .*"
        r"bound ≤ 2.2× baseline → FAIL",
        s.out,
    )
    assert m and float(m.group(3)) > 2.2, s.out
    assert "1 failed" in s.out, s.out
    html = s.report.read_text()
    row = re.search(
        r'<tr class="pd-fail-row"><td>mean_tpot_ms</td>'
        r'<td class="num">([\d.]+)</td><td class="num">([\d.]+)</td>'
        r'<td class="num">[\d.]+×</td><td class="num">≤ 2.2× baseline</td>',
        html,
    )
    assert row, "no red TPOT row with both values and the bound"
    assert float(row.group(1)) == pytest.approx(float(m.group(1)), rel=1e-3)
    assert float(row.group(2)) == pytest.approx(float(m.group(2)), rel=1e-3)
    tail = re.search(
        r"<h5>sim-pp2: decode-0 \(last lines of its log\)</h5>"
        r'<pre class="pd-pre pd-log">([^<]*)</pre>',
        html,
    )
    assert tail and "pytest_pd.sim" in tail.group(1), "no decode log tail"
    assert "router (last lines of its log)" in html
    # JUnit: our verdict is the failure message
    failure = ET.parse(chain["work"] / "junit.xml").getroot().find(".//testcase/failure")
    assert failure is not None and "mean_tpot_ms: candidate" in failure.get("message", "")
    summary = (chain["work"] / "summary.md").read_text()
    assert "❌ FAIL" in summary and "| sim-pp2 (candidate, simulated ×10) |" in summary
    assert_nothing_left(chain["work"] / "runs")


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} missing (Debian package chromium)")
def test_report_renders_in_headless_chromium(chain, tmp_path):
    report = chain["slow"].report
    assert "1 failed" in chain["slow"].out, chain["slow"].out
    found = inspect_report(report, tmp_path)
    assert found["console_errors"] == [], found["console_errors"]
    assert found["comparison_tables"] >= 1 and found["comparison_visible"]
    assert found["failing_rows"] >= 1
    assert found["verdict_cells"] and set(found["verdict_cells"]) == {"rgb(249, 211, 211)"}  # red
    assert found["scripts_from_network"] == []
    charts = found["charts"]
    assert {"cdf", "timeline", "tokens-per-s", "trend"} <= {c["kind"] for c in charts}
    for c in charts:
        assert c["loaded"] and c["visible"] and c["width"] > 100 and c["height"] > 50, c
