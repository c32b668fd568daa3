"""The shipped suite through smg (router.kind: smg) instead of sglang-router: same table, the
router's own metrics in the stored telemetry and the report, nothing left running."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from pytest_pd.cluster.routers import KINDS
from pytest_pd.cluster.spec_file import load_cluster
from pytest_pd.cluster.topology import Topology
from tests.helpers import (
    REPO,
    SEED_BOUNDS_SPEEDUP,
    assert_nothing_left,
    get_json,
    run_session,
    sim_cluster_copy,
)
from tests.helpers.twin_truth import write_cluster

pytestmark = pytest.mark.serial  # the shipped suite's verdicts on measured timing


def test_seed_suite_passes_on_sim_clusters_through_smg(pytester, tmp_path, monkeypatch):
    folder = tmp_path / "clusters"
    for name in ("sim-pp2", "sim-tp8"):
        path = sim_cluster_copy(name, folder, sim={"speedup": SEED_BOUNDS_SPEEDUP})
        data = yaml.safe_load(path.read_text())
        data["router"]["kind"] = "smg"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    summary = tmp_path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result, out = run_session(pytester, folder, str(REPO / "suites" / "test_pd_acceptance.py"), "-rs")
    text = result.stdout.str()
    assert result.ret == 0, text
    result.assert_outcomes(passed=1, skipped=3)  # the cpu-* workloads are not for sim clusters
    assert "pytest-pd: candidate vs baseline" in text
    assert re.search(r"sim-pp2 \(candidate, simulated ×\d+\)\s+TP=4, PP=2", text), text
    assert re.search(r"sim-tp8 \(baseline, simulated ×\d+\)\s+TP=8", text), text
    assert re.search(r"verdict\s+pass\s+pass\s+pass", text), text

    report = (out / "report.html").read_text()
    assert "PD acceptance: candidate vs baseline" in report
    assert "Router-side metrics over the run" in report and "smg_worker_health{worker=" in report
    # the router's kind and version: in the header, the step summary and every record
    assert re.search(r"router \(smg, harness\) smg 1\.13\.0", report), report[:2000]
    assert "behind the real smg;" in report
    assert re.search(r"versions: engine sim \(pytest-pd\); router smg 1\.13\.0", summary.read_text())

    results = sorted((out / "results").glob("*.json"))
    assert [p.name.split("-", 1)[1] for p in results] == [
        "sim-pp2-in6000-out1000-c16-n32.json",
        "sim-tp8-in6000-out1000-c16-n32.json",
    ]
    for path in results:
        data = json.loads(path.read_text())
        assert data["metrics"]["completed"] == 32 and data["metrics"]["failed"] == 0
        assert "-m smg.launch_router --pd-disaggregation" in data["cluster"]["commands"]
        assert data["cluster"]["router_kind"] == "smg" and data["environment"]["router"] == "smg 1.13.0"
        router = data["telemetry"]["server"]["router"]
        assert router["errors"] == 0 and router["url"].endswith("/metrics")
        first, last = router["samples"][0]["values"], router["samples"][-1]["values"]
        routed = sum(
            v - first.get(k, 0.0) for k, v in last.items() if k.startswith("smg_router_requests_total{")
        )
        assert routed >= 32, last  # the run's requests, counted by the router itself
        health = {k: v for k, v in last.items() if k.startswith("smg_worker_health{")}
        assert len(health) == 2 and set(health.values()) == {1.0}, last
        kept = KINDS["smg"].metric_families  # only the kind's families are stored
        assert all(k.split("{", 1)[0] in kept for k in last), sorted(last)
    assert_nothing_left(out / "runs")


def test_bring_up_waits_until_smg_has_polled_every_workers_load(tmp_path):
    """smg scores a worker it has not yet polled against the ones it has, so that the first
    requests after bring-up pile on those (runs of one 2P2D workload measured TTFT +50 % in 5 of
    7 bring-ups): bring-up waits until its /loads lists every worker."""
    write_cluster(
        tmp_path,
        "smg-2p2d",
        [{"tp": 4}] * 2,
        [{"tp": 4}] * 2,
        1,
        10.0,
        None,
        "smg",
        ["--shutdown-grace-period-secs", "1"],
    )
    spec = load_cluster(str(tmp_path / "smg-2p2d.yaml"), tmp_path)
    said: list[str] = []
    with Topology(spec, tmp_path / "runs" / "r", say=said.append):
        listed = {row["worker"] for row in get_json(spec.router_url + "/loads")["loads"]}
    expected = {spec.server_url(s) for role in ("prefill", "decode") for s in spec.servers(role)}
    assert listed == expected
    polled = [line for line in said if "router has polled the load of" in line]
    assert polled and re.search(r"polled the load of 4 of 4 workers after \d+\.\d s$", polled[0]), said
    assert_nothing_left(tmp_path / "runs")
