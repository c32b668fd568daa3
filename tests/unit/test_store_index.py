"""The results store's SQLite index (pytest_pd/store/index.py): what it returns is what the JSON
files say (summarize(load_result(path))), a sync follows new, changed and deleted files, skips
(and remembers) unreadable ones and costs one query when nothing changed, a deleted or damaged
index is rebuilt, the look-ups filter as asked, and two processes writing to one index at once
lose nothing."""

from __future__ import annotations

import json
import math
import multiprocessing
import shutil
import sqlite3
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, event

from pytest_pd import results as store
from pytest_pd.errors import PdError
from pytest_pd.failure import Failure
from pytest_pd.record import ClusterInfo, Environment, ModelInfo, RunRecord
from pytest_pd.store.index import LOCAL_ORIGIN, ResultsIndex, StoreError
from pytest_pd.store.summary import summarize
from pytest_pd.store.tables import SCHEMA_VERSION
from pytest_pd.workload.spec import Workload
from tests.helpers.index_writer import W as WRITTEN
from tests.helpers.index_writer import write_and_index

DATA = Path(__file__).parents[1] / "data" / "results"  # real files of pytest-pd 0.1.0 (schema 3)
NOW = 1_800_000_000.0
W1 = Workload(input_len=10, output_len=5, concurrency=1, num_requests=2)  # in10-out5-c1-n2
W2 = Workload(input_len=20, output_len=5, concurrency=2, num_requests=4)
INDEX = ".pytest-pd-index.sqlite"


def record(
    cluster: str = "sim-tp8",
    workload: Workload = W1,
    started: float = NOW,
    model: str = "m",
    ttft: float = 10.0,
    **extra: object,
) -> RunRecord:
    fields: dict = {
        "metrics": {"completed": 2, "failed": 0, "mean_ttft_ms": ttft, "p99_ttft_ms": math.nan},
        "session": "s1",
        "environment": Environment(
            pytest_pd="0.1.0", python="3.11.7", git_commit="abc123", engines={"prefill-0": "sglang 0.5.23"}
        ),
        **extra,
    }
    return RunRecord(
        cluster=ClusterInfo(
            name=cluster, engine="sim", commands="# prefill-0 on h1 (127.0.0.1)\npython -m x --port 1\n"
        ),
        workload=workload,
        model=ModelInfo(name=model),
        started_at=started,
        **fields,
    )


def expected(path: Path):
    return summarize(store.load_result(path), str(path))


def copy_data(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy2(p, folder)) for p in sorted(DATA.glob("*.json"))]


class Statements:
    """Counts the SQL statements every engine of this process executes (a real count, from
    SQLAlchemy's events)."""

    def __init__(self) -> None:
        self.sql: list[str] = []

    def __enter__(self) -> Statements:
        event.listen(Engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(Engine, "before_cursor_execute", self._seen)

    def _seen(self, conn, cursor, statement, parameters, context, executemany) -> None:
        self.sql.append(statement)


_OPENED: list[str] | None = None
_HOOKED = False


def _audit(event_name: str, args: tuple) -> None:
    if _OPENED is not None and event_name == "open" and str(args[0]).endswith(".json"):
        _OPENED.append(str(args[0]))


class OpenedFiles:
    """The .json files this process opens meanwhile (a Python audit hook: every open() is seen;
    installed at first use, idle outside these blocks)."""

    def __enter__(self) -> list[str]:
        global _OPENED, _HOOKED
        if not _HOOKED:
            sys.addaudithook(_audit)
            _HOOKED = True
        _OPENED = []
        return _OPENED

    def __exit__(self, *exc: object) -> None:
        global _OPENED
        _OPENED = None


# ---------------------------------------------------------------------------- what it returns


def test_runs_equal_summaries_of_the_real_files_and_of_added_records(tmp_path):
    files = copy_data(tmp_path)
    rich = record(
        started=NOW + 5,
        repeats=[{"mean_ttft_ms": 9.0, "completed": 2}, {"mean_ttft_ms": 11.0, "completed": 2}],
        problems=["1 request failed"],
        baseline_mark=True,
    )
    failed = record(
        started=NOW + 6,
        metrics={},
        failure=Failure(
            cluster="sim-tp8",
            stage="bring-up",
            kind="BringUpError",
            message="decode-0 exited",
            recorded={"w": "f"},
        ),
    )
    with ResultsIndex.open(tmp_path) as index:
        assert index.origin == LOCAL_ORIGIN
        assert index.sync() == (3, 0)
        added = []
        for rec in (rich, failed):
            path = store.save_result(tmp_path, rec)
            index.add(rec, path)
            added.append(path)
        got = index.runs(sources=("suite", "bench"))
    want = sorted((expected(p) for p in [*files, *added]), key=lambda r: r.started_at)
    assert got == want
    assert [r.path for r in got] == [
        str(p) for p in sorted([*files, *added], key=lambda p: expected(p).started_at)
    ]
    by_path = {r.path: r for r in got}
    rich_run = by_path[str(added[0])]
    assert rich_run.samples == {"mean_ttft_ms": (9.0, 11.0), "completed": (2.0, 2.0)}
    assert rich_run.problems == ("1 request failed",) and rich_run.baseline_mark and not rich_run.sound
    assert (
        rich_run.facts["version prefill-0"] == "sglang 0.5.23"
        and rich_run.facts["command prefill-0"] == "python -m x --port 1"
    )
    assert "p99_ttft_ms" not in rich_run.metrics  # NaN: left out, as summarize does
    assert by_path[str(added[1])].failure == "bring-up: decode-0 exited"
    # what add() stored is what a sync reading the files finds: a fresh index agrees
    (tmp_path / INDEX).unlink()
    with ResultsIndex.open(tmp_path) as index:
        assert index.sync() == (5, 0)
        assert index.runs(sources=("suite", "bench")) == want


def test_sync_follows_new_changed_and_deleted_files(tmp_path):
    paths = [store.save_result(tmp_path, record(started=NOW + i)) for i in range(3)]
    with ResultsIndex.open(tmp_path) as index:
        assert index.sync() == (3, 0)
        assert index.sync() == (0, 0)
        new = store.save_result(tmp_path, record(started=NOW + 10, ttft=12.0))  # by another session
        assert index.sync() == (1, 0)
        store.write_record(paths[1], record(started=NOW + 1, ttft=123.25))  # changed in place
        assert index.sync() == (1, 0)
        paths[0].unlink()
        assert index.sync() == (0, 1)
        runs = index.runs()
    assert [r.path for r in runs] == [str(paths[1]), str(paths[2]), str(new)]
    assert [r.metrics["mean_ttft_ms"] for r in runs] == [123.25, 10.0, 12.0]
    assert runs == [expected(p) for p in (paths[1], paths[2], new)]


def test_unreadable_files_are_skipped_remembered_and_picked_up_once_fixed(tmp_path):
    good = store.save_result(tmp_path, record())
    (tmp_path / "cut.json").write_text(good.read_text()[:500])  # a disk that filled up
    (tmp_path / "foreign.json").write_text("[1, 2]")
    (tmp_path / "other-tool.json").write_text(json.dumps({"metrics": {}}))
    (tmp_path / "notes.txt").write_text("not a results file")
    with ResultsIndex.open(tmp_path) as index:
        assert index.sync() == (1, 0)
        assert [r.path for r in index.runs(sources=("suite", "bench"))] == [str(good)]
        assert index.series() == [("sim-tp8", W1.id, "m")]
        with OpenedFiles() as opened, Statements() as sql:
            assert index.sync() == (0, 0)
        assert opened == [] and len(sql.sql) == 1  # nothing parsed again: a scan and one query
        store.write_record(tmp_path / "cut.json", record(started=NOW + 1))
        assert index.sync() == (1, 0)
        (tmp_path / "foreign.json").unlink()  # an unreadable file gone: no run removed
        assert index.sync() == (0, 0)
        assert len(index.runs()) == 2


def test_nothing_changed_costs_a_directory_scan_and_one_query(tmp_path):
    for i in range(300):
        store.save_result(tmp_path, record(started=NOW + i), with_requests=False)
    with ResultsIndex.open(tmp_path) as index:
        cold = time.perf_counter()
        assert index.sync() == (300, 0)
        cold = time.perf_counter() - cold
        with OpenedFiles() as opened, Statements() as sql:
            warm = time.perf_counter()
            assert index.sync() == (0, 0)
            warm = time.perf_counter() - warm
    assert opened == [] and len(sql.sql) == 1 and sql.sql[0].lstrip().upper().startswith("SELECT")
    assert warm < cold / 5, (warm, cold)


# ---------------------------------------------------------------------------- rebuilding


def test_a_deleted_index_is_rebuilt_also_while_open(tmp_path):
    paths = [store.save_result(tmp_path, record(started=NOW + i)) for i in range(2)]
    with ResultsIndex.open(tmp_path) as index:
        index.sync()
    (tmp_path / INDEX).unlink()  # between sessions
    with ResultsIndex.open(tmp_path) as index:
        assert index.sync() == (2, 0)
        (tmp_path / INDEX).unlink()  # during a session
        late = store.save_result(tmp_path, record(started=NOW + 5))
        index.add(record(started=NOW + 5), late)
        assert (tmp_path / INDEX).exists()
        assert [r.path for r in index.runs()] == [str(p) for p in (*paths, late)]
    with ResultsIndex.open(tmp_path) as index:  # and the rebuilt file is what a new session sees
        assert index.sync() == (0, 0) and len(index.runs()) == 3


def test_a_damaged_or_foreign_index_is_rebuilt(tmp_path):
    path = store.save_result(tmp_path, record())
    (tmp_path / INDEX).write_bytes(b"this is not an SQLite file" * 100)
    with ResultsIndex.open(tmp_path) as index:
        assert index.sync() == (1, 0)
    (tmp_path / INDEX).unlink()
    with sqlite3.connect(tmp_path / INDEX) as db:  # an older layout under our table's name
        db.execute("CREATE TABLE pytest_pd_runs (name TEXT PRIMARY KEY, summary TEXT)")
        db.execute("INSERT INTO pytest_pd_runs VALUES ('x.json', '{}')")
    db.close()
    with ResultsIndex.open(tmp_path) as index:
        assert index.runs() == []  # rebuilt empty: the old rows meant nothing
        assert index.sync() == (1, 0)
        assert index.runs() == [expected(path)]
    with sqlite3.connect(tmp_path / INDEX) as db:  # an index of another schema version
        db.execute("UPDATE pytest_pd_index_meta SET value = '0' WHERE name = 'schema_version'")
    db.close()
    with ResultsIndex.open(tmp_path) as index:
        assert index.sync() == (1, 0)
    with sqlite3.connect(tmp_path / INDEX) as db:
        assert db.execute("SELECT value FROM pytest_pd_index_meta").fetchall() == [(str(SCHEMA_VERSION),)]
    db.close()


def test_a_moved_results_folder_keeps_its_index(tmp_path):
    old = tmp_path / "old"
    paths = [store.save_result(old, record(started=NOW + i)) for i in range(2)]
    with ResultsIndex.open(old) as index:
        index.sync()
    new = tmp_path / "new"
    old.rename(new)
    with ResultsIndex.open(new) as index, OpenedFiles() as opened:
        assert index.sync() == (0, 0)
        assert [r.path for r in index.runs()] == [str(new / p.name) for p in paths]
    assert opened == []


# ---------------------------------------------------------------------------- look-ups


def test_filters_cluster_key_model_since_failed_and_sources(tmp_path):
    fail = Failure(cluster="a", stage="run", kind="RuntimeError", message="boom")
    recs = {
        "a-w1-m": record("a", W1, NOW + 1),
        "a-w1-m-failed": record("a", W1, NOW + 2, metrics={}, failure=fail),
        "a-w2-m": record("a", W2, NOW + 3),
        "a-w1-other": record("a", W1, NOW + 4, model="other"),
        "b-w1-m": record("b", W1, NOW + 5),
        "a-w1-m-bench": record("a", W1, NOW + 6, source="bench"),
        "a-w1-m-late": record("a", W1, NOW + 7),
    }
    with ResultsIndex.open(tmp_path) as index:
        paths = {}
        for name, rec in reversed(recs.items()):  # stored out of order: runs() sorts by start
            paths[name] = store.save_result(tmp_path, rec)
            index.add(rec, paths[name])

        def names(runs) -> list[str]:
            return [next(n for n, p in paths.items() if str(p) == r.path) for r in runs]

        assert names(index.runs()) == [
            "a-w1-m",
            "a-w1-m-failed",
            "a-w2-m",
            "a-w1-other",
            "b-w1-m",
            "a-w1-m-late",
        ]
        assert names(index.runs("a", W1.id, "m")) == ["a-w1-m", "a-w1-m-failed", "a-w1-m-late"]
        assert names(index.runs("a", W1.id, "m", include_failed=False)) == ["a-w1-m", "a-w1-m-late"]
        assert names(index.runs("a", W1.id)) == ["a-w1-m", "a-w1-m-failed", "a-w1-other", "a-w1-m-late"]
        assert names(index.runs(key=W2.id)) == ["a-w2-m"]
        assert names(index.runs(model="other")) == ["a-w1-other"]
        assert names(index.runs("b")) == ["b-w1-m"]
        assert names(index.runs("a", W1.id, "m", since=NOW + 2)) == ["a-w1-m-failed", "a-w1-m-late"]
        assert names(index.runs("a", W1.id, "m", sources=("bench",))) == ["a-w1-m-bench"]
        assert names(index.runs("a", W1.id, "m", sources=("suite", "bench"))) == [
            "a-w1-m", "a-w1-m-failed", "a-w1-m-bench", "a-w1-m-late"
        ]  # fmt: skip
        assert index.runs("nope") == []
        assert index.series() == [
            ("a", W1.id, "m"),
            ("a", W1.id, "other"),
            ("a", W2.id, "m"),
            ("b", W1.id, "m"),
        ]
        for name, path in paths.items():
            assert next(r for r in index.runs(sources=("suite", "bench")) if r.path == str(path)) == expected(
                path
            ), name


def test_add_refuses_a_file_outside_the_folder(tmp_path):
    elsewhere = store.save_result(tmp_path / "elsewhere", record())
    with (
        ResultsIndex.open(tmp_path / "store") as index,
        pytest.raises(ValueError, match="not in the indexed"),
    ):
        index.add(record(), elsewhere)


# ---------------------------------------------------------------------------- errors


def test_unsupported_urls_are_store_errors_with_the_password_redacted(tmp_path):
    for url in ("mysql://ci:hunter2-pw@db:3306/pd", "http://ci:hunter2-pw@db/pd", "not a url"):
        with pytest.raises(StoreError) as info:
            ResultsIndex.open(tmp_path, url)
        text = str(info.value)
        assert isinstance(info.value, PdError)
        assert "hunter2-pw" not in text and "--pd-results" in text and "JSON results files" in text
        assert str(tmp_path) in text
    assert "mysql://ci:***redacted***@db:3306/pd" in str(
        pytest.raises(StoreError, ResultsIndex.open, tmp_path, "mysql://ci:hunter2-pw@db:3306/pd").value
    )


def test_an_index_locked_too_long_is_a_store_error_not_a_hang(tmp_path):
    path = store.save_result(tmp_path, record())
    with ResultsIndex.open(tmp_path, timeout_s=0.5) as index:
        index.sync()
        holder = sqlite3.connect(tmp_path / INDEX, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another session in the middle of a write, stuck
        try:
            assert len(index.runs()) == 1  # readers do not wait (WAL)
            started = time.monotonic()
            with pytest.raises(StoreError, match="locked by another session for more than 0.5 s") as info:
                index.add(record(), path)
            assert time.monotonic() - started < 3
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert str(tmp_path / INDEX) in str(info.value) and "rebuilt" in str(info.value)
        index.add(record(), path)  # and once it is free again, it works


# ---------------------------------------------------------------------------- two processes


def test_two_processes_writing_one_index_at_once_lose_nothing(tmp_path):
    n = 40
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        jobs = pool.starmap_async(
            write_and_index, [(str(tmp_path), None, "x", n, NOW), (str(tmp_path), None, "y", n, NOW)]
        )
        saved = sum(jobs.get(timeout=180), [])
    assert len(set(saved)) == 2 * n
    with ResultsIndex.open(tmp_path) as index:
        got = index.runs()
        assert sorted(r.path for r in got) == sorted(saved)
        assert index.sync() == (0, 0)  # nothing was missing
        assert index.series() == [("c-x", WRITTEN.id, "m"), ("c-y", WRITTEN.id, "m")]


def test_the_files_are_read_when_the_local_index_cannot_be_used(tmp_path):
    from pytest_pd.store.source import stored_runs

    for p in sorted(DATA.glob("*.json")):
        shutil.copy2(p, tmp_path)
    (tmp_path / ".pytest-pd-index.sqlite").mkdir()  # where the index file would go: unusable
    said: list[str] = []
    runs = stored_runs(tmp_path, warn=said.append)
    assert said and "JSON files" in said[0]
    expected = sorted(
        (summarize(store.load_result(p), str(p)) for p in tmp_path.glob("*.json")), key=lambda r: r.started_at
    )
    assert runs == [r for r in expected if r.source == "suite"]
