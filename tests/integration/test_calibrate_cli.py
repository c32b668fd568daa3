"""`pytest-pd calibrate` end to end as a process: stored runs of sim-pp2 and sim-tp8 in a results
store (their cluster files as the suites record them; their numbers made by the timing model with
hidden parameters), the fit table, the profile written, and the refusals."""

from __future__ import annotations

import dataclasses
import subprocess
import time
from pathlib import Path

import yaml

from pytest_pd.cluster.spec_file import load_cluster
from pytest_pd.record import ClusterInfo, RunRecord
from pytest_pd.results import save_result
from pytest_pd.sim.closed_loop import simulate
from pytest_pd.sim.model import SimParams
from pytest_pd.twin.observed import topology_of
from pytest_pd.workload.spec import Workload
from tests.helpers import REPO, pd_cli

HIDDEN = dataclasses.replace(
    SimParams(), prefill_tokens_per_s=13000.0, decode_memory_efficiency=0.38, kv_bootstrap_s=0.5
)
SEED = Workload(input_len=6000, output_len=1000, concurrency=16, num_requests=32)


def store_run(results: Path, cluster: str) -> None:
    spec = load_cluster(cluster, REPO / "clusters").model_dump(mode="json")
    n = SEED.num_requests
    out = simulate(
        HIDDEN, topology_of(spec), [SEED.input_len] * n, [SEED.output_len] * n, concurrency=SEED.concurrency
    )
    from pytest_pd.twin.observed import stats_of

    metrics = {**stats_of(out["requests"], out["duration_s"]), "completed": n, "failed": 0}
    record = RunRecord(
        cluster=ClusterInfo(name=cluster, spec=spec), workload=SEED, metrics=metrics, started_at=time.time()
    )
    save_result(results, record)


def calibrate(*args: str) -> subprocess.CompletedProcess[str]:
    return pd_cli("calibrate", *args)


def test_calibrate_writes_a_profile_that_fits_the_stored_runs(tmp_path: Path):
    results = tmp_path / "results"
    store_run(results, "sim-pp2")
    store_run(results, "sim-tp8")
    out = tmp_path / "profiles" / "h20-hidden.yaml"
    done = calibrate(
        "--cluster", "sim-pp2", "--cluster", "sim-tp8", "--results-dir", str(results), "-o", str(out)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sim-pp2/in6000-out1000-c16-n32" in done.stdout and "mean_ttft_ms" in done.stdout
    assert f"kv_bootstrap_s: {SimParams().kv_bootstrap_s:g} ->" in done.stdout
    profile = yaml.safe_load(out.read_text())
    assert profile["name"] == "h20-hidden" and set(profile["fitted"]) >= {
        "kv_bootstrap_s",
        "prefill_tokens_per_s",
    }
    assert {s["cluster"] for s in profile["sources"]} == {"sim-pp2", "sim-tp8"}
    errors = [abs(e) for per in profile["fit_error"].values() for e in per.values()]
    assert errors and max(errors) < 0.03
    assert abs(profile["params"]["kv_bootstrap_s"] - 0.5) < 0.05  # the hidden value, found


def test_calibrate_refuses_what_it_cannot_do(tmp_path: Path):
    results = tmp_path / "results"
    store_run(results, "sim-tp8")
    out = tmp_path / "p.yaml"
    done = calibrate(
        "--cluster",
        "sim-tp8",
        "--results-dir",
        str(results),
        "--fit",
        "prefill_tokens_per_s,tp_scaling",
        "-o",
        str(out),
    )
    assert done.returncode == 2 and "do not exercise tp_scaling" in done.stderr, done.stderr
    done = calibrate("--cluster", "sim-pp2", "--results-dir", str(results), "-o", str(out))
    assert done.returncode == 2
    assert (
        "no sound stored run of sim-pp2" in done.stderr and "pytest suites/ --cluster=sim-pp2" in done.stderr
    )
    assert not out.exists() and "Traceback" not in done.stderr
