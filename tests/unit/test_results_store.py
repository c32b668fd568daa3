"""The results store: atomic, never-overwriting writes (also from concurrent processes), a reader
of every older schema (files stored by earlier versions load as records), compressed per-request
records, and the baseline/history lookups."""

from __future__ import annotations

import json
import math
import multiprocessing
from pathlib import Path

import pytest

from pytest_pd import results as store
from pytest_pd.record import (
    SCHEMA_VERSION,
    ClusterInfo,
    Failure,
    ModelInfo,
    RunRecord,
    decode_requests,
    encode_requests,
)
from pytest_pd.workload.spec import Workload

NOW = 1_800_000_000.0
OLD_RESULTS = Path(__file__).parents[1] / "data" / "results"  # stored by pytest-pd 0.1.0, schema 3
W = Workload(input_len=10, output_len=5, concurrency=1, num_requests=2)  # in10-out5-c1-n2


def payload(
    cluster: str = "sim-tp8", workload: Workload = W, started: float = NOW, **extra: object
) -> RunRecord:
    fields: dict = {"metrics": {"completed": 2, "failed": 0, "mean_ttft_ms": 10.0}, **extra}
    return RunRecord(
        cluster=ClusterInfo(name=cluster),
        workload=workload,
        model=ModelInfo(name="m"),
        started_at=started,
        **fields,
    )


def _save_many(folder: str, n: int) -> list[str]:
    return [str(store.save_result(Path(folder), payload())) for _ in range(n)]


def test_concurrent_writers_never_overwrite_and_never_leave_partial_files(tmp_path):
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        # bounded: a worker lost to the OS would otherwise leave the pool waiting for ever
        paths = sum(pool.starmap_async(_save_many, [(str(tmp_path), 5)] * 4).get(timeout=120), [])
    assert len(set(paths)) == 20  # same cluster, workload and second: 20 distinct files
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(Path(p).name for p in paths)
    for p in paths:  # no temp files left, every file complete
        assert json.loads(Path(p).read_text())["schema_version"] == SCHEMA_VERSION
    assert oct(Path(paths[0]).stat().st_mode & 0o044) == oct(0o044)  # readable by others


def test_reader_accepts_older_schemas_and_skips_unreadable_files(tmp_path):
    old = {
        "cluster": {"name": "sim-tp8"},
        "workload": W.to_dict(),
        "metrics": {"mean_ttft_ms": None},
        "started_at": NOW,
    }
    (tmp_path / "a-v0.json").write_text(json.dumps(old))
    (tmp_path / "b-v1.json").write_text(json.dumps({**old, "schema_version": 1, "started_at": NOW + 1}))
    (tmp_path / "c-cut.json").write_text('{"cluster": {"na')
    (tmp_path / "d-foreign.json").write_text("[1, 2]")
    (tmp_path / "e-no-cluster.json").write_text(json.dumps({"metrics": {}}))
    runs = list(store.iter_results(tmp_path))
    assert [r.started_at for r in runs] == [NOW, NOW + 1]
    assert all(r.schema_version == SCHEMA_VERSION for r in runs)
    assert runs[0].repeats == [] and runs[0].baseline_mark is False and runs[0].workload == W
    assert math.isnan(runs[0].metrics["mean_ttft_ms"])


def test_results_stored_by_the_previous_version_load_as_records():
    suite, failed, bench = (store.load_result(p) for p in sorted(OLD_RESULTS.glob("*.json")))
    assert suite.source == "suite" and suite.cluster.name == "sim-tp8" and suite.failure is None
    assert suite.workload.id == "in6000-out1000-c16-n32" and suite.speedup == 10.0
    assert (
        suite.cluster.prefill_strategy == "TP=8"
        and suite.environment.engines["decode-0"] == "sim (pytest-pd)"
    )
    assert suite.environment.router == "sglang-router 0.3.2"  # was sglang_router: the harness's
    assert suite.metrics["completed"] == 32 and suite.metrics["mean_ttft_ms"] > 1000
    assert len(suite.runs()) == 1 and len(suite.runs()[0]["records"]) == 3
    assert failed.failure is not None and failed.failure.stage == "bring-up" and failed.metrics == {}
    assert "decode-0" in failed.failure.logs and not store.usable(failed)
    assert bench.source == "bench" and bench.command and bench.cluster.router_url
    # written back in today's schema, the record reads the same
    again = RunRecord.model_validate_json(suite.to_json())
    assert again.model_dump(exclude={"path"}) == suite.model_dump(exclude={"path"})
    assert json.loads(suite.to_json())["schema_version"] == SCHEMA_VERSION


def test_requests_round_trip_compressed():
    run = {"records": [{"index": i, "chunk_times": [0.1 * k for k in range(200)]} for i in range(20)]}
    block = encode_requests(run)
    assert block["count"] == 20 and len(block["data"]) < len(json.dumps(run)) / 2
    assert decode_requests(block) == run
    assert decode_requests(None) is None


def test_a_failure_is_stored_without_the_files_it_was_recorded_in(tmp_path):
    failure = Failure(cluster="sim-tp8", stage="run", kind="BringUpError", message="lost decode-0", at=NOW)
    failure.recorded["w"] = "elsewhere.json"
    path = store.save_result(tmp_path, payload(metrics={}, failure=failure))
    data = json.loads(path.read_text())
    assert data["failure"]["message"] == "lost decode-0" and "recorded" not in data["failure"]
    assert "path" not in data and data["started_at_iso"] == "2027-01-15T08:00:00Z"


def test_pick_baseline_prefers_marked_then_newest_within_max_age():
    runs = [
        payload(started=NOW - 300, path="old-marked", baseline_mark=True),
        payload(started=NOW - 100, path="newer"),
        payload(started=NOW - 50, path="failed", metrics={"completed": 1, "failed": 1}),
    ]
    pick = store.pick_baseline(runs, NOW, 3600)
    assert pick.run.path == "old-marked" and pick.reason == "marked baseline"
    assert store.pick_baseline(runs[1:], NOW, 3600).run.path == "newer"
    too_old = store.pick_baseline(runs, NOW, 60)
    assert too_old.run is None and "older than the maximum age" in too_old.reason
    assert store.pick_baseline([], NOW, 60).reason == "no stored run"
    assert "none without failures" in store.pick_baseline(runs[2:], NOW, 60).reason


def test_previous_run_skips_this_session_and_later_runs():
    runs = [
        payload(started=NOW - 20, session="a"),
        payload(started=NOW - 10, session="b"),
        payload(started=NOW, session="c"),
    ]
    assert store.previous_run(runs, "c", NOW).session == "b"
    assert store.previous_run(runs, "b", NOW).session == "a"
    assert store.previous_run(runs[2:], "c", NOW + 1) is None


def test_find_runs_filters_cluster_workload_model(tmp_path):
    store.save_result(tmp_path, payload(started=NOW + 2))
    store.save_result(tmp_path, payload(started=NOW + 1))
    store.save_result(tmp_path, payload(cluster="sim-pp2"))
    store.save_result(
        tmp_path, payload(workload=Workload(input_len=11, output_len=5, concurrency=1, num_requests=2))
    )
    store.save_result(tmp_path, payload().model_copy(update={"model": ModelInfo(name="other-model")}))
    store.save_result(tmp_path, payload(started=NOW + 3, source="bench"))  # ad hoc runs: never
    failure = Failure(cluster="sim-tp8", stage="bring-up", kind="BringUpError", message="x")
    failed = store.save_result(tmp_path, payload(started=NOW + 4, metrics={}, failure=failure))
    runs = store.find_runs(tmp_path, "sim-tp8", "in10-out5-c1-n2", "m")
    assert [r.started_at for r in runs] == [NOW + 1, NOW + 2]
    with_failed = store.find_runs(tmp_path, "sim-tp8", "in10-out5-c1-n2", "m", include_failed=True)
    assert with_failed[-1].path == str(failed) and not store.usable(with_failed[-1])


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("30m", 1800), ("12h", 43200), ("7d", 604800), ("2w", 1209600), ("0", math.inf)],
)
def test_parse_age(text, seconds):
    assert store.parse_age(text) == seconds


def test_parse_age_rejects_nonsense():
    with pytest.raises(ValueError, match="not an age"):
        store.parse_age("yesterday")
