"""The results index on a real PostgreSQL server (tests/helpers/postgres.py: Debian's binaries, a
fresh cluster on 127.0.0.1 and a free port): the same summaries as the JSON files, two processes
writing at once, two results folders (origins) sharing one database, and the failures a user
meets (server stopped mid-session, wrong password, nothing listening, a server that never
answers) as quick StoreErrors that name the URL without its password and leave the JSON files
alone."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import socket
import time
from pathlib import Path

import psycopg
import pytest

from pytest_pd import results as store
from pytest_pd.record import ClusterInfo, ModelInfo, RunRecord
from pytest_pd.store.index import ResultsIndex, StoreError, default_origin
from pytest_pd.store.summary import summarize
from pytest_pd.workload.spec import Workload
from tests.helpers import free_port
from tests.helpers.index_writer import write_and_index
from tests.helpers.postgres import LocalPostgres, PostgresUnavailable, start_postgres

DATA = Path(__file__).parents[1] / "data" / "results"
NOW = 1_800_000_000.0
W = Workload(input_len=10, output_len=5, concurrency=1, num_requests=2)


def record(cluster: str = "sim-tp8", started: float = NOW, **extra: object) -> RunRecord:
    return RunRecord(
        cluster=ClusterInfo(name=cluster),
        workload=W,
        model=ModelInfo(name="m"),
        started_at=started,
        metrics={"completed": 2, "failed": 0, "mean_ttft_ms": 10.0 + started - NOW},
        **extra,
    )


def expected(path: Path):
    return summarize(store.load_result(path), str(path))


def redacted(server: LocalPostgres) -> str:
    return f"postgresql://{server.user}:***redacted***@127.0.0.1:{server.port}/{server.database}"


def _start(folder: Path) -> LocalPostgres:
    try:
        return start_postgres(folder)
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """One real PostgreSQL for the module; stopped (and checked gone) at the end."""
    pg = _start(tmp_path_factory.mktemp("pg"))
    yield pg
    pg.destroy()
    assert not pg.leftover()


@pytest.fixture
def url(server: LocalPostgres) -> str:
    """The URL of a fresh, empty database on the module's server."""
    server.reset_database()
    return server.url


# ---------------------------------------------------------------------------- what it holds


def test_roundtrip_through_postgres_equals_the_files(tmp_path, url, server):
    files = [Path(shutil.copy2(p, tmp_path)) for p in sorted(DATA.glob("*.json"))]
    with ResultsIndex.open(tmp_path, url) as index:
        assert index.origin == default_origin(tmp_path) and index.location == redacted(server)
        assert index.sync() == (3, 0)
        rec = record(
            started=NOW + 1, repeats=[{"mean_ttft_ms": 1.5}, {"mean_ttft_ms": 2.5}], baseline_mark=True
        )
        path = store.save_result(tmp_path, rec)
        index.add(rec, path)
        got = index.runs(sources=("suite", "bench"))
        assert index.sync() == (0, 0)
    want = sorted((expected(p) for p in [*files, path]), key=lambda r: r.started_at)
    assert got == want
    assert got[-1].samples == {"mean_ttft_ms": (1.5, 2.5)} and got[-1].baseline_mark
    psycopg_url = url.replace("postgresql://", "postgresql+psycopg://")
    with ResultsIndex.open(tmp_path, psycopg_url) as index:  # both spellings, the same index
        assert index.runs(sources=("suite", "bench")) == want
        assert index.runs(include_failed=False) == [
            r for r in want if r.source == "suite" and r.failure is None
        ]


def test_an_older_index_is_rebuilt_and_a_newer_one_left_alone(tmp_path, url, server):
    path = store.save_result(tmp_path, record())
    with ResultsIndex.open(tmp_path, url) as index:
        index.sync()
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE pytest_pd_index_meta SET value = '0'")
    with ResultsIndex.open(tmp_path, url) as index:
        assert index.runs() == []
        assert index.sync() == (1, 0) and index.runs() == [expected(path)]
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE pytest_pd_index_meta SET value = '99'")
    with pytest.raises(StoreError, match="schema version 99, newer than") as info:
        ResultsIndex.open(tmp_path, url)
    assert server.password not in str(info.value) and redacted(server) in str(info.value)
    with psycopg.connect(url) as conn:  # untouched
        assert conn.execute("SELECT count(*) FROM pytest_pd_runs").fetchone() == (1,)


# ---------------------------------------------------------------------------- sharing


def test_two_processes_writing_at_once_lose_nothing(tmp_path, url):
    n = 30
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        jobs = pool.starmap_async(
            write_and_index, [(str(tmp_path), url, "x", n, NOW), (str(tmp_path), url, "y", n, NOW)]
        )
        saved = sum(jobs.get(timeout=180), [])
    assert len(set(saved)) == 2 * n
    with ResultsIndex.open(tmp_path, url) as index:
        assert sorted(r.path for r in index.runs()) == sorted(saved)
        assert index.sync() == (0, 0)
        assert index.series() == [("c-x", W.id, "m"), ("c-y", W.id, "m")]


def test_two_origins_share_one_database_and_keep_each_others_rows(tmp_path, url):
    a, b = tmp_path / "runner-a", tmp_path / "runner-b"
    pa = [store.save_result(a, record("a", NOW + i)) for i in range(2)]
    pb = [store.save_result(b, record("b", NOW + 10 + i)) for i in range(3)]
    with ResultsIndex.open(a, url) as ia, ResultsIndex.open(b, url) as ib:
        assert ia.origin != ib.origin
        assert ia.sync() == (2, 0) and ib.sync() == (3, 0)
        both = [str(p) for p in (*pa, *pb)]
        assert [r.path for r in ia.runs()] == both == [r.path for r in ib.runs()]
        pa[0].unlink()
        assert ia.sync() == (0, 1)
        assert ib.sync() == (0, 0)
        assert [r.path for r in ib.runs()] == both[1:]
        shutil.rmtree(b)  # runner b's folder gone (a mount that failed): nothing deleted
        assert ib.sync() == (0, 0) and len(ia.runs()) == 4
        b.mkdir()  # emptied: its runs leave the index, runner a's stay
        assert ib.sync() == (0, 3)
        assert [r.path for r in ia.runs()] == [str(pa[1])]
        assert ia.series() == [("a", W.id, "m")]


# ---------------------------------------------------------------------------- failures


def test_server_stopped_mid_session_is_a_quick_store_error_and_the_json_stays(tmp_path):
    own = _start(tmp_path / "pg")
    try:
        with ResultsIndex.open(tmp_path / "results", own.url) as index:
            first = store.save_result(tmp_path / "results", record())
            index.add(record(), first)
            own.stop()
            assert not own.leftover()
            rec = record(started=NOW + 1)
            path = store.save_result(tmp_path / "results", rec)  # the session writes its file first
            started = time.monotonic()
            with pytest.raises(StoreError) as info:
                index.add(rec, path)
            assert time.monotonic() - started < 5
            text = str(info.value)
            assert redacted(own) in text and own.password not in text
            assert "went away during the session" in text and "--pd-results" in text
            assert f"JSON results files are still written to {tmp_path / 'results'}" in text
            assert "leave --pd-results out to use the local SQLite index" in text
            assert store.load_result(path).started_at == NOW + 1  # the record of truth is there
            with pytest.raises(StoreError):
                index.runs()
            own.start()  # back: the same index object works again, and a sync catches up
            assert index.sync() == (1, 0)
            assert [r.path for r in index.runs()] == [str(first), str(path)]
    finally:
        own.destroy()
    assert not own.leftover()


def _quick_error(folder: Path, url: str, limit_s: float) -> str:
    started = time.monotonic()
    with pytest.raises(StoreError) as info:
        ResultsIndex.open(folder, url)
    elapsed = time.monotonic() - started
    assert elapsed < limit_s, elapsed
    return str(info.value)


def test_wrong_password_nothing_listening_or_no_database_are_quick_store_errors(tmp_path, url, server):
    text = _quick_error(tmp_path, server.url_with(password="wrong-pw-123"), 5)
    assert "refused the login" in text and "password authentication failed" in text
    assert "wrong-pw-123" not in text and "***redacted***" in text and "--pd-results" in text
    port = free_port()
    text = _quick_error(tmp_path, server.url_with(port=port), 5)
    assert "cannot reach PostgreSQL" in text and f"127.0.0.1:{port}" in text and "Connection refused" in text
    assert server.password not in text and "JSON results files are still written" in text
    text = _quick_error(tmp_path, server.url_with(database="no_such_db"), 5)
    assert "no such database" in text and server.password not in text


def test_a_server_that_never_answers_times_out_instead_of_hanging(tmp_path, server):
    with socket.socket() as silent:  # accepts TCP connections (the backlog) and never speaks
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        text = _quick_error(tmp_path, server.url_with(port=port), 9)
    assert "cannot reach PostgreSQL" in text and "timeout" in text.lower() and server.password not in text


def test_a_user_who_may_not_create_the_tables_is_told_so(tmp_path, url, server):
    with server.superuser() as conn:
        conn.execute("DROP ROLE IF EXISTS pd_reader")
        conn.execute("CREATE ROLE pd_reader LOGIN PASSWORD 'reader-pw-77'")
    text = _quick_error(tmp_path, server.url_with(user="pd_reader", password="reader-pw-77"), 5)
    assert "denied the user a right it needs" in text and "GRANT CREATE ON SCHEMA public" in text
    assert "reader-pw-77" not in text and "postgresql://pd_reader:***redacted***@" in text


# ---------------------------------------------------------------------------- whole sessions

SESSION_SUITE = """
import pytest
from pytest_pd import Workload

W = Workload(input_len=500, output_len=16, concurrency=2, num_requests=4)

@pytest.mark.parametrize("pd_workload", [W], ids=lambda w: w.id)
def test_run(pd_run):
    assert pd_run.candidate.metrics["completed"] == 4
"""


def _session(pytester: pytest.Pytester, tmp_path: Path, results_url: str, *args: str):
    from tests.helpers import run_session, sim_cluster_copy

    pytester.makepyfile(test_session=SESSION_SUITE)
    clusters = tmp_path / "clusters"
    sim_cluster_copy("sim-tp8", clusters, baseline=None, sim={"speedup": 20})
    return run_session(
        pytester, clusters, f"--pd-results={results_url}", "-W", "always", *args, cluster="sim-tp8"
    )


def test_a_session_indexes_its_runs_in_postgres_and_history_reads_them(pytester, tmp_path, url, server):
    from tests.helpers import pd_cli

    result, out = _session(pytester, tmp_path, url, "--pd-results-origin=runner-a")
    assert result.ret == 0, result.stdout.str()[-3000:]
    (path,) = (out / "results").glob("*.json")
    with ResultsIndex.open(out / "results", url, origin="runner-a") as index:
        assert [r.path for r in index.runs("sim-tp8")] == [str(path)]  # the session added it
        assert index.sync() == (0, 0)  # under the runner's stable name: nothing to add again
    done = pd_cli(
        "history", "--results-dir", str(out / "results"), "--results", url, "--origin", "runner-a", "--json"
    )
    assert done.returncode == 0, done.stderr
    series = json.loads(done.stdout)["series"]
    assert {s["cluster"] for s in series} == {"sim-tp8"} and series[0]["points"][0]["runs"] == [str(path)]


def test_a_session_whose_postgres_is_unreachable_says_so_and_keeps_its_json(pytester, tmp_path):
    secret = "s3cret-pw"
    url = f"postgresql://pd:{secret}@127.0.0.1:{free_port()}/pd"
    started = time.monotonic()
    result, out = _session(pytester, tmp_path, url)
    text = result.stdout.str()
    assert result.ret == 0, text[-3000:]  # the run itself is fine: only the index is not
    assert "PdStoreWarning" in text and "results index" in text and secret not in text
    assert f"reads the history from the JSON files in {out / 'results'}" in text
    assert len(list((out / "results").glob("*.json"))) == 1
    assert time.monotonic() - started < 120
