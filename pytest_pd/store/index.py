"""The results store's index (:class:`ResultsIndex`): the summary (``summary.py``) of every JSON
results file of a folder in an SQL database, so that history and baseline look-ups read a few
columns instead of parsing every file. The JSON files stay the record of truth: the index is
brought up to date from them (:meth:`ResultsIndex.sync`: new or changed files, by name, size and
mtime, are parsed; rows of deleted files are dropped) and can be deleted at any time.

Where it lives (``database.py``): by default the SQLite file ``.pytest-pd-index.sqlite`` in the
results folder (every row is of that folder: origin ``.``, so a folder moved or copied keeps its
index); or a PostgreSQL database shared by several hosts (``--pd-results
postgresql://USER:PASSWORD@HOST:PORT/DB``), where each results folder is its own origin
(``hostname:/abs/results/dir``): a sync adds and deletes only its own origin's rows, and
:meth:`ResultsIndex.runs` returns every origin's runs (their ``path`` is on the host that wrote
them). Every database failure is a :class:`StoreError` (one paragraph: what, where, what to do).

    with ResultsIndex.open(Path("results")) as index:
        index.sync()
        history = index.runs("sim-tp8", "in6000-out1000-c16-n32", "sim-tiny")
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import filelock
from sqlalchemy import Connection, Engine, delete, func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from pytest_pd.record import RunRecord, migrate
from pytest_pd.results import load_result
from pytest_pd.store import tables
from pytest_pd.store.database import (
    LOCK_FILENAME,
    StoreError,
    Target,
    make_engine,
    store_error,
    target,
)
from pytest_pd.store.summary import StoredRun, summarize

__all__ = ["LOCAL_ORIGIN", "ResultsIndex", "StoreError", "default_origin", "scan"]

T = TypeVar("T")
LOCAL_ORIGIN = "."
"""The origin of every row of the SQLite index kept in its own results folder."""
BATCH = 100  # files parsed per write transaction: other sessions' writes interleave
_DELETE_CHUNK = 500
_RETRY_STATES = ("40P01", "40001")  # deadlock_detected, serialization_failure: retried
_ADVISORY_LOCK = 0x70645F696E646578  # "pd_index": one session creates or rebuilds the tables
_UNREADABLE = (OSError, ValueError, KeyError, TypeError)  # what results.iter_results skips


def default_origin(results_dir: Path) -> str:
    """``hostname:/abs/results/dir``: a results folder in a database shared by several hosts."""
    return f"{socket.gethostname()}:{Path(results_dir).resolve()}"


def scan(folder: Path) -> dict[str, tuple[int, int]] | None:
    """{name: (size, mtime_ns)} of the ``*.json`` files in ``folder``; None when it is missing."""
    out: dict[str, tuple[int, int]] = {}
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if not entry.name.endswith(".json"):
                    continue
                try:
                    if not entry.is_file():
                        continue
                    st = entry.stat()
                except OSError:  # deleted while we looked
                    continue
                out[entry.name] = (st.st_size, st.st_mtime_ns)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return out


def _one_line(exc: BaseException, limit: int = 400) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:limit]


class ResultsIndex:
    """The index of one results folder (see the module's docstring). Open with :meth:`open`;
    use as a context manager or call :meth:`close`."""

    def __init__(self, t: Target, origin: str) -> None:
        self.results_dir = Path(t.results_dir)
        self.origin = origin
        self._t = t
        self._abs_dir = Path(os.path.abspath(self.results_dir))
        self._engine: Engine | None = None
        self._connected = False
        self._file_id: tuple[int, int] | None = None

    @classmethod
    def open(
        cls,
        results_dir: Path,
        url: str | None = None,
        *,
        timeout_s: float | None = None,
        origin: str | None = None,
    ) -> ResultsIndex:
        """The index of ``results_dir`` in the database ``url`` names (None: the SQLite file in the
        folder; ``postgresql://USER:PASSWORD@HOST:PORT/DB``, also ``postgresql+psycopg://``),
        its tables created or rebuilt as needed. ``timeout_s``: how long to wait for the database
        (PostgreSQL: to connect, 5 s; SQLite: for another session's write, 10 s). ``origin``:
        this folder's name in a shared database (default ``hostname:/abs/results/dir``; give a
        stable one where host names change at every job, e.g. in containers)."""
        t = target(Path(results_dir), url, timeout_s)
        # the SQLite file in the folder holds that folder only: an origin is a shared index's
        index = cls(t, (origin or default_origin(t.results_dir)) if url else LOCAL_ORIGIN)
        try:
            index._setup()
        except BaseException:
            index.close()
            raise
        return index

    @property
    def location(self) -> str:
        """The database, as shown in messages (password redacted)."""
        return self._t.shown

    def __repr__(self) -> str:
        return f"ResultsIndex({self._t.shown!r}, origin={self.origin!r})"

    def __enter__(self) -> ResultsIndex:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    # ---------------------------------------------------------------------------- setup

    def _setup(self) -> None:
        if self._t.is_sqlite:
            self._setup_sqlite()
            return
        self._engine = make_engine(self._t)

        def create(conn: Connection) -> str | None:
            conn.execute(select(func.pg_advisory_xact_lock(_ADVISORY_LOCK)))
            return tables.ensure_schema(conn, replace_newer=False)

        try:
            self._run("opening the index", create)
        except tables.NewerIndex as exc:
            raise StoreError(
                f"results index: {self._t.shown} holds an index of schema version {exc.version}, "
                f"newer than this pytest-pd's ({tables.SCHEMA_VERSION}), which leaves it alone; "
                f"upgrade pytest-pd on this host. {self._t.advice()}"
            ) from exc

    def _setup_sqlite(self) -> None:
        file = self._t.sqlite_file
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            lock = filelock.FileLock(str(file.parent / LOCK_FILENAME), timeout=self._t.timeout_s)
            with lock:
                if not file.exists():  # left by a crashed session: would be replayed into a new file
                    for suffix in ("-wal", "-shm", "-journal"):
                        Path(f"{file}{suffix}").unlink(missing_ok=True)
                self._engine = make_engine(self._t)
                try:
                    self._run("opening the index", lambda c: tables.ensure_schema(c, replace_newer=True))
                except StoreError as exc:
                    if "not a database" not in str(exc) and "malformed" not in str(exc):
                        raise
                    self._engine.dispose()  # a damaged index: it is derived data, start again
                    for suffix in ("", "-wal", "-shm", "-journal"):
                        Path(f"{file}{suffix}").unlink(missing_ok=True)
                    self._engine = make_engine(self._t)
                    self._run("opening the index", lambda c: tables.ensure_schema(c, replace_newer=True))
                st = file.stat()
                self._file_id = (st.st_dev, st.st_ino)
        except filelock.Timeout as exc:
            raise StoreError(
                f"results index: another session held {file.parent / LOCK_FILENAME} for more than "
                f"{self._t.timeout_s:g} s while this one opened the SQLite index {self._t.shown}. "
                f"{self._t.advice()}"
            ) from exc
        except OSError as exc:
            raise store_error(self._t, exc, "opening the index", connected=False) from exc

    def _fresh(self) -> bool:
        """Reopen (rebuild) the SQLite index if its file was deleted or replaced since it was
        opened; True if it was (the caller syncs)."""
        if not self._t.is_sqlite:
            return False
        try:
            st = os.stat(self._t.sqlite_file)
            if (st.st_dev, st.st_ino) == self._file_id:
                return False
        except FileNotFoundError:
            pass
        self.close()
        self._setup()
        return True

    # ---------------------------------------------------------------------------- database access

    def _run(self, doing: str, work: Callable[[Connection], T]) -> T:
        """``work`` in one transaction; a dropped connection or a deadlock is retried (every
        write is an upsert or a delete: repeating it is harmless), any other database failure
        becomes a StoreError."""
        if self._engine is None:
            raise ValueError(f"{self!r} is closed")
        for attempt in range(3):
            try:
                with self._engine.begin() as conn:
                    result = work(conn)
                self._connected = True
                return result
            except DBAPIError as exc:
                state = getattr(exc.orig, "sqlstate", None)
                if attempt < 2 and (exc.connection_invalidated or state in _RETRY_STATES):
                    continue
                raise store_error(self._t, exc, doing, connected=self._connected) from exc
            except PoolTimeout as exc:
                raise store_error(self._t, exc, doing, connected=self._connected) from exc
        raise AssertionError("unreachable")

    def _write(self, doing: str, rows: list[dict[str, Any]]) -> None:
        if rows:
            assert self._engine is not None
            stmt = tables.upsert(self._engine.dialect.name)
            self._run(doing, lambda conn: conn.execute(stmt, rows))

    # ---------------------------------------------------------------------------- writing

    def _row(self, name: str, size: int, mtime_ns: int, summary: Mapping[str, Any]) -> dict[str, Any]:
        where = {"origin": self.origin, "name": name, "path": str(self._abs_dir / name)}
        return {**where, "size": size, "mtime_ns": mtime_ns, **summary}

    def _file_row(self, name: str, size: int, mtime_ns: int) -> dict[str, Any]:
        path = self.results_dir / name
        try:
            summary = tables.run_row(summarize(load_result(path), str(path)))
        except _UNREADABLE as exc:  # remembered by size and mtime: not parsed again until changed
            summary = tables.error_row(_one_line(exc))
        return self._row(name, size, mtime_ns, summary)

    def sync(self) -> tuple[int, int]:
        """Bring the index up to date with this folder's JSON files: files new or changed since
        they were indexed (name, size, mtime) are parsed and upserted, rows of files gone are
        deleted (only this origin's). Unreadable files are skipped (and remembered). Returns
        (runs added or updated, runs removed). When nothing changed: a directory scan and one
        query. A missing folder changes nothing."""
        self._fresh()
        r = tables.runs
        query = select(r.c.name, r.c.size, r.c.mtime_ns, r.c.error.is_(None).label("ok"))
        query = query.where(r.c.origin == self.origin)
        rows = self._run("reading the index", lambda conn: conn.execute(query).all())
        files = scan(self.results_dir)  # after the query: a row added meanwhile has its file
        if files is None:
            return 0, 0
        known = {row.name: (row.size, row.mtime_ns) for row in rows}
        gone = [row for row in rows if row.name not in files]
        todo = sorted(name for name, stat in files.items() if known.get(name) != stat)
        added = 0
        for start in range(0, len(todo), BATCH):
            batch = [self._file_row(name, *files[name]) for name in todo[start : start + BATCH]]
            self._write("indexing the results files", batch)
            added += sum(1 for row in batch if row["error"] is None)
        names = [row.name for row in gone]
        for start in range(0, len(names), _DELETE_CHUNK):
            chunk = names[start : start + _DELETE_CHUNK]
            self._delete(chunk)
        return added, sum(1 for row in gone if row.ok)

    def _delete(self, names: list[str]) -> None:
        r = tables.runs
        stmt = delete(r).where(r.c.origin == self.origin, r.c.name.in_(names))
        self._run("removing rows of deleted results files", lambda conn: conn.execute(stmt))

    def add(self, record: RunRecord, path: Path) -> None:
        """Index one run just saved to ``path`` (``results.save_result``'s) in this folder."""
        path = Path(path)
        if path.parent.resolve() != self.results_dir.resolve():
            raise ValueError(f"{path} is not in the indexed results folder {self.results_dir}")
        if self._fresh():
            self.sync()
        st = path.stat()
        # as the file holds it (what a sync would read): NaN as null, ints as written
        text = record.brief().to_json(with_requests=False)
        stored = RunRecord.model_validate(migrate(json.loads(text)))
        summary = tables.run_row(summarize(stored, str(self.results_dir / path.name)))
        self._write(f"indexing {path.name}", [self._row(path.name, st.st_size, st.st_mtime_ns, summary)])

    # ---------------------------------------------------------------------------- reading

    def _path(self, origin: str, name: str, stored: str) -> str:
        return str(self.results_dir / name) if origin == self.origin else stored

    def runs(
        self,
        cluster: str | None = None,
        key: str | None = None,
        model: str | None = None,
        *,
        since: float | None = None,
        include_failed: bool = True,
        sources: tuple[str, ...] = ("suite",),
    ) -> list[StoredRun]:
        """Indexed runs, oldest first (by ``started_at``): of ``cluster``, ``key`` (a
        ``RunRecord.key``) and ``model`` when given, started at or after ``since``, without runs
        that did not complete unless ``include_failed``, of the given ``sources`` ("suite",
        "bench"). Reads the index only (call :meth:`sync` first to see files added by hand)."""
        if self._fresh():
            self.sync()
        r = tables.runs
        query = select(*tables.SUMMARY_COLUMNS).where(r.c.error.is_(None), r.c.source.in_(sources))
        for column, value in ((r.c.cluster, cluster), (r.c.key, key), (r.c.model, model)):
            if value is not None:
                query = query.where(column == value)
        if since is not None:
            query = query.where(r.c.started_at >= since)
        if not include_failed:
            query = query.where(r.c.failure.is_(None))
        query = query.order_by(r.c.started_at, r.c.origin, r.c.name)

        def read(conn: Connection) -> list[StoredRun]:
            strings: dict[str, str] = {}  # row by row, as they come: never all rows and all runs
            return [
                tables.stored_run(row, self._path(row["origin"], row["name"], row["path"]), strings)
                for row in conn.execute(query).mappings()
            ]

        return self._run("reading the index", read)

    def series(self) -> list[tuple[str, str, str | None]]:
        """Every distinct (cluster, key, model) of the indexed suite runs, sorted."""
        if self._fresh():
            self.sync()
        r = tables.runs
        query = (
            select(r.c.cluster, r.c.key, r.c.model)
            .where(r.c.error.is_(None), r.c.source == "suite")
            .distinct()
        )
        rows = self._run("reading the index", lambda conn: conn.execute(query).all())
        found = {(row.cluster, row.key, row.model) for row in rows}
        return sorted(found, key=lambda s: (s[0], s[1], s[2] or ""))
