"""A stored baseline counts only if it was launched as the baseline's cluster file launches it now
(judge/baseline.py): after the file is edited, its earlier runs measured another cluster. Ports,
addresses and interpreters do not count (cluster/commands.py: launch_identity)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pytest_pd import results as store
from pytest_pd.cluster.commands import launch_identity, render_commands
from pytest_pd.cluster.spec import ClusterSpec
from pytest_pd.cluster.spec_file import load_cluster
from pytest_pd.errors import BaselineError
from pytest_pd.judge.baseline import plan_baseline
from pytest_pd.record import ClusterInfo, ModelInfo, RunRecord
from pytest_pd.store.changes import launch_changes
from pytest_pd.store.summary import summarize
from pytest_pd.workload.spec import Workload
from tests.helpers import CLUSTERS

W = Workload(input_len=10, output_len=5, concurrency=1, num_requests=2)


class Measurer:
    def __init__(self, results_dir: Path, specs: dict[str, ClusterSpec]) -> None:
        self.results_dir = results_dir
        self.specs = specs

    def baseline_of(self, spec: ClusterSpec) -> ClusterSpec:
        return self.specs[str(spec.baseline)]

    def cached(self, spec: ClusterSpec, workload: object) -> None:
        return None


def stored(folder: Path, spec: ClusterSpec, *, python: str, age_s: float = 60.0) -> Path:
    """A sound stored run of ``spec``, its commands rendered with interpreter ``python``."""
    info = ClusterInfo(
        name=spec.label, commands=render_commands(spec, local_python=python), launch=launch_identity(spec)
    )
    record = RunRecord(
        cluster=info,
        workload=W,
        model=ModelInfo(name=spec.model_name),
        metrics={"completed": 2, "failed": 0, "mean_ttft_ms": 10.0},
        started_at=time.time() - age_s,
    )
    return store.save_result(folder, record)


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Measurer, ClusterSpec, ClusterSpec]:
    candidate, baseline = load_cluster("sim-pp2", CLUSTERS), load_cluster("sim-tp8", CLUSTERS)
    return Measurer(tmp_path, {baseline.label: baseline}), candidate, baseline


def test_a_run_launched_alike_is_used_whatever_its_ports_addresses_and_interpreter(pair):
    measurer, candidate, baseline = pair
    path = stored(measurer.results_dir, baseline, python="/ci/runner-7/.venv/bin/python")
    moved = baseline.model_copy(
        update={
            "prefill": [baseline.prefill[0].model_copy(update={"port": 41000, "bootstrap_port": 41001})],
            "hosts": {
                n: h.model_copy(update={"address": "10.0.0.9", "python": "/opt/py"})
                for n, h in baseline.hosts.items()
            },
        }
    )
    measurer.specs[baseline.label] = moved
    plan = plan_baseline("stored", 86400, measurer, candidate, W, "pytest …")
    assert plan.stored is not None and plan.stored.cluster.name == "sim-tp8"
    assert str(path) in plan.source


def test_a_run_launched_otherwise_is_not_a_baseline_and_the_edit_is_named(pair):
    measurer, candidate, baseline = pair
    stored(measurer.results_dir, baseline, python="python")
    edited = baseline.model_copy(
        update={
            "decode": [baseline.decode[0].model_copy(update={"chunked_prefill_size": 4096})],
            "env": {**baseline.env, "NCCL_DEBUG": "INFO"},
        }
    )
    measurer.specs[baseline.label] = edited
    with pytest.raises(BaselineError) as err:
        plan_baseline("stored", 86400, measurer, candidate, W, "pytest --pd-baseline=live --pd-save-baseline")
    text = str(err.value)
    assert "1 stored run(s) launched otherwise than" in text and "sim-tp8.yaml launches sim-tp8 now" in text
    assert "--chunked-prefill-size (decode-0): (none) -> 4096" in text, text
    assert "env NCCL_DEBUG: (none) -> INFO" in text, text
    assert "--pd-save-baseline" in text
    # auto: measured live instead, and the report says why
    plan = plan_baseline("auto", 86400, measurer, candidate, W, "…")
    assert plan.live is not None and "launched otherwise" in plan.source


def test_the_index_summary_is_judged_by_the_same_facts(pair):
    measurer, candidate, baseline = pair
    path = stored(measurer.results_dir, baseline, python="/x/python")
    summary = summarize(store.load_result(path), path=str(path))
    assert "launch" in summary.facts
    assert launch_changes(summary.facts["launch"], launch_identity(baseline)) == []
    other = launch_identity(baseline.model_copy(update={"env": {"A": "1"}}))
    assert [c.text for c in launch_changes(summary.facts["launch"], other)][-1] == "env A: (none) -> 1"
    assert launch_changes(None, other) == []  # a run stored before runs recorded one: not compared
    plan = plan_baseline("stored", 86400, measurer, candidate, W, "…", stored=lambda *_: [summary])
    assert plan.source == f"stored (newest stored run: {path})"


def test_a_server_variable_counts():
    before = "# prefill-0 on a (a)\nA=1 python -m x --tp 2\n"
    assert launch_changes(before, before) == []
    changed = launch_changes(before, "# prefill-0 on a (a)\nA=2 python -m x --tp 2\n")
    assert [c.fact for c in changed] == ["program"], changed
