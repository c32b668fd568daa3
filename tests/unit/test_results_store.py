"""The results store: atomic, never-overwriting writes (also from concurrent processes), a reader
tolerant of older files, compressed per-request records, redaction, and the baseline/history
lookups."""

from __future__ import annotations

import json
import math
import multiprocessing
from pathlib import Path

import pytest

from pytest_pd import results as store

NOW = 1_800_000_000.0


def payload(
    cluster: str = "sim-tp8", workload: str = "in10-out5-c1-n2", started: float = NOW, **extra: object
) -> dict:
    return {
        "cluster": {"name": cluster},
        "workload": {"id": workload},
        "model": {"name": "m"},
        "metrics": {"completed": 2, "failed": 0, "mean_ttft_ms": 10.0},
        "started_at": started,
        **extra,
    }


def _save_many(folder: str, n: int) -> list[str]:
    return [str(store.save_result(Path(folder), payload())) for _ in range(n)]


def test_concurrent_writers_never_overwrite_and_never_leave_partial_files(tmp_path):
    with multiprocessing.get_context("fork").Pool(4) as pool:
        # bounded: a worker lost to the OS would otherwise leave the pool waiting for ever
        paths = sum(pool.starmap_async(_save_many, [(str(tmp_path), 5)] * 4).get(timeout=120), [])
    assert len(set(paths)) == 20  # same cluster, workload and second: 20 distinct files
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(Path(p).name for p in paths)
    for p in paths:  # no temp files left, every file complete
        assert json.loads(Path(p).read_text())["schema_version"] == store.SCHEMA_VERSION
    assert oct(Path(paths[0]).stat().st_mode & 0o044) == oct(0o044)  # readable by others


def test_reader_accepts_older_schemas_and_skips_unreadable_files(tmp_path):
    old = {
        "cluster": {"name": "sim-tp8"},
        "workload": {"id": "w"},
        "metrics": {"mean_ttft_ms": None},
        "started_at": NOW,
    }
    (tmp_path / "a-v0.json").write_text(json.dumps(old))
    (tmp_path / "b-v1.json").write_text(json.dumps({**old, "schema_version": 1, "started_at": NOW + 1}))
    (tmp_path / "c-cut.json").write_text('{"cluster": {"na')
    (tmp_path / "d-foreign.json").write_text("[1, 2]")
    runs = list(store.iter_results(tmp_path))
    assert [r["schema_version"] for r in runs] == [0, 1]
    assert runs[0]["repeats"] == [] and runs[0]["baseline_mark"] is False
    assert math.isnan(runs[0]["metrics"]["mean_ttft_ms"])


def test_requests_round_trip_compressed():
    run = {"records": [{"index": i, "chunk_times": [0.1 * k for k in range(200)]} for i in range(20)]}
    block = store.encode_requests(run)
    assert block["count"] == 20 and len(block["data"]) < len(json.dumps(run)) / 2
    assert store.decode_requests(block) == run
    assert store.decode_requests(None) is None


def test_pick_baseline_prefers_marked_then_newest_within_max_age():
    runs = [
        payload(started=NOW - 300, path="old-marked", baseline_mark=True),
        payload(started=NOW - 100, path="newer"),
        payload(started=NOW - 50, path="failed", metrics={"completed": 1, "failed": 1}),
    ]
    pick = store.pick_baseline(runs, NOW, 3600)
    assert pick.run["path"] == "old-marked" and pick.reason == "marked baseline"
    assert store.pick_baseline(runs[1:], NOW, 3600).run["path"] == "newer"
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
    assert store.previous_run(runs, "c", NOW)["session"] == "b"
    assert store.previous_run(runs, "b", NOW)["session"] == "a"
    assert store.previous_run(runs[2:], "c", NOW + 1) is None


def test_find_runs_filters_cluster_workload_model(tmp_path):
    store.save_result(tmp_path, payload(started=NOW + 2))
    store.save_result(tmp_path, payload(started=NOW + 1))
    store.save_result(tmp_path, payload(cluster="sim-pp2"))
    store.save_result(tmp_path, payload(workload="other"))
    store.save_result(tmp_path, {**payload(), "model": {"name": "other-model"}})
    store.save_result(tmp_path, payload(started=NOW + 3, source="bench"))  # ad hoc runs: never
    failed = store.save_result(
        tmp_path, payload(started=NOW + 4, metrics={}, failure={"stage": "bring-up", "message": "x"})
    )
    runs = store.find_runs(tmp_path, "sim-tp8", "in10-out5-c1-n2", "m")
    assert [r["started_at"] for r in runs] == [NOW + 1, NOW + 2]
    with_failed = store.find_runs(tmp_path, "sim-tp8", "in10-out5-c1-n2", "m", include_failed=True)
    assert with_failed[-1]["path"] == str(failed) and not store.usable(with_failed[-1])


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("30m", 1800), ("12h", 43200), ("7d", 604800), ("2w", 1209600), ("0", math.inf)],
)
def test_parse_age(text, seconds):
    assert store.parse_age(text) == seconds


def test_parse_age_rejects_nonsense():
    with pytest.raises(ValueError, match="not an age"):
        store.parse_age("yesterday")
