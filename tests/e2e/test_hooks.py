"""The pytest_pd_* hooks (hookspec.py), each implemented by a suite's conftest.py in a real session
on simulated clusters: environment facts and the record before it is stored (both in the results
file), the baseline choice, extra report content, cluster up and down; a failing cluster-up hook
fails the bring-up with its message and leaves nothing running."""

from __future__ import annotations

import json

import pytest

from tests.helpers import assert_nothing_left, run_session

SUITE = """
import pytest
from pytest_pd import Workload, threshold

TINY = Workload(input_len=200, output_len=8, concurrency=2, num_requests=4)

@threshold("mean_ttft_ms", max_ratio=1.5)
@pytest.mark.parametrize("pd_workload", [TINY], ids=lambda w: w.id)
def test_tiny(pd_run):
    assert pd_run.candidate.metrics["completed"] == 4
"""

CONFTEST = """
import os
from pathlib import Path

from pytest_pd.judge.baseline import BaselinePlan

EVENTS = Path(os.environ["HOOK_EVENTS"])


def log(text):
    with EVENTS.open("a") as fh:
        fh.write(text + "\\n")


def pytest_pd_environment(config):
    return {"gpu_driver": "550.54.15"}


def pytest_pd_record(config, record):
    record.extra["ticket"] = "PERF-1234"
    log(f"record {record.cluster.name} failed={record.failure is not None}")


def pytest_pd_baseline(config, spec, workload, planned):
    log(f"baseline of {spec.label}: planned {planned.live.label}")
    return BaselinePlan(live=spec, source="chosen by the suite's hook")


def pytest_pd_report_extras(config, comparison):
    return f'<p class="suite-extra">extra for {comparison.workload_id}</p>'


def pytest_pd_cluster_up(config, topology):
    log(f"up {topology.spec.label}")
    if os.environ.get("HOOK_FAIL_UP"):
        raise RuntimeError("GPU clocks are not locked")


def pytest_pd_cluster_down(config, topology):
    log(f"down {topology.spec.label}")
"""


@pytest.fixture
def hooked_suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    pytester.makepyfile(test_suite=SUITE)
    pytester.makeconftest(CONFTEST)
    events = pytester.path / "events.txt"
    monkeypatch.setenv("HOOK_EVENTS", str(events))
    return events


def test_every_hook_is_called_and_changes_what_it_should(pytester, sim_clusters, hooked_suite):
    result, out = run_session(pytester, sim_clusters)
    text = result.stdout.str()
    assert result.ret == 0, text
    assert hooked_suite.read_text().splitlines() == [
        "baseline of sim-pp2: planned sim-tp8",
        "up sim-pp2",
        "record sim-pp2 failed=False",
        "down sim-pp2",
    ]
    # the hook's baseline replaced sim-tp8 (never brought up): the candidate against itself
    assert "baseline: sim-pp2, measured in this session" in text
    assert not list((out / "runs").glob("*sim-tp8*"))
    (stored,) = (json.loads(p.read_text()) for p in (out / "results").glob("*.json"))
    assert stored["extra"] == {"ticket": "PERF-1234"}
    assert stored["environment"]["gpu_driver"] == "550.54.15"
    report = (out / "report.html").read_text()
    assert "extra for in200-out8-c2-n4" in report
    assert (
        "sim-pp2: chosen by the suite&#x27;s hook" in report
        or "sim-pp2: chosen by the suite's hook" in report
    )
    assert_nothing_left(out / "runs")


def test_a_failing_cluster_up_hook_fails_the_bring_up_and_tears_down(
    pytester, sim_clusters, hooked_suite, monkeypatch
):
    monkeypatch.setenv("HOOK_FAIL_UP", "1")
    result, out = run_session(pytester, sim_clusters)
    text = result.stdout.str()
    assert result.ret != 0
    assert "the pytest_pd_cluster_up hook failed: RuntimeError: GPU clocks are not locked" in text, text
    assert "Traceback" not in text
    (stored,) = (json.loads(p.read_text()) for p in (out / "results").glob("*.json"))
    assert stored["failure"]["stage"] == "bring-up" and stored["extra"] == {"ticket": "PERF-1234"}
    assert hooked_suite.read_text().splitlines()[-1] == "record sim-pp2 failed=True"
    assert_nothing_left(out / "runs")
