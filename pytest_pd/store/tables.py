"""The results index's tables (SQLAlchemy Core), its schema version, and a stored run's summary
as a row and back.

``pytest_pd_runs``: one row per JSON file, keyed by (origin, name): ``origin`` is the results
folder that wrote it (``host:/abs/results/dir`` in a shared database, so one PostgreSQL database
holds the runs of several CI runners; ``.`` in the SQLite index kept in the folder itself).
``size`` and ``mtime_ns`` are the file's when it was parsed (a sync parses it again only when
they differ); ``error`` is set, and the summary columns are NULL, for a file that could not be
read (remembered so that it is not parsed at every sync). The summary's scalar fields are
columns (usable in WHERE); ``problems`` is a JSON list in a text column; metrics, samples and
facts are JSON.

``pytest_pd_index_meta``: ``schema_version``. An index of another version, or tables of these
names in another layout, are dropped and made anew (the JSON files are the record; each origin
re-indexes its files at its next sync), except that a PostgreSQL index of a *newer* version is
left alone (:class:`NewerIndex`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    Dialect,
    Double,
    Index,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    insert,
    inspect,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import RowMapping
from sqlalchemy.sql.dml import Insert

from pytest_pd.store.summary import StoredRun

SCHEMA_VERSION = 2
"""1: the first; 2: engine versions as each engine names itself ("sglang 0.5.23", a record's
environment.engines), so an index of 1 is rebuilt from the files, whose migration says the same."""


class TextList(TypeDecorator[tuple[str, ...]]):
    """A tuple of strings as its JSON text (comparable in WHERE on every backend: ``= '[]'``)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else json.dumps(list(value), ensure_ascii=False)

    def process_result_value(self, value: Any, dialect: Dialect) -> tuple[str, ...] | None:
        return None if value is None else tuple(json.loads(value))


metadata = MetaData()

runs = Table(
    "pytest_pd_runs",
    metadata,
    Column("origin", String, primary_key=True),
    Column("name", String, primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),
    Column("path", Text, nullable=False),  # the file's absolute path on the origin's host
    Column("error", Text),  # why the file could not be read; NULL for a run
    Column("cluster", String),
    Column("key", String),
    Column("model", String),
    Column("started_at", Double),
    Column("session", String),
    Column("source", String),
    Column("baseline_mark", Boolean),
    Column("failure", Text),
    Column("problems", TextList),
    Column("metrics", JSON(none_as_null=True)),
    Column("samples", JSON(none_as_null=True)),
    Column("facts", JSON(none_as_null=True)),
    Index("ix_pytest_pd_runs_series", "cluster", "key", "started_at"),
)

meta = Table(
    "pytest_pd_index_meta",
    metadata,
    Column("name", String, primary_key=True),
    Column("value", String, nullable=False),
)

SUMMARY_FIELDS = ("cluster", "key", "model", "started_at", "session", "source", "baseline_mark", "failure")
JSON_FIELDS = ("problems", "metrics", "samples", "facts")
SUMMARY_COLUMNS = [runs.c[n] for n in ("origin", "name", "path", *SUMMARY_FIELDS, *JSON_FIELDS)]
"""What ``runs()`` reads: where the file is and every summary column (not size, mtime_ns, error)."""


class NewerIndex(Exception):
    """The database holds an index of a newer schema version than this pytest-pd's."""

    def __init__(self, version: int) -> None:
        super().__init__(version)
        self.version = version


def ensure_schema(conn: Connection, *, replace_newer: bool) -> str | None:
    """Create the tables if missing; rebuild them when another version or layout is found.
    Returns what was done (None: nothing). The caller holds the lock against a second session
    doing the same at once."""
    insp = inspect(conn)
    names = set(insp.get_table_names())
    version = None
    if meta.name in names and {c["name"] for c in insp.get_columns(meta.name)} == set(meta.c.keys()):
        text = conn.execute(select(meta.c.value).where(meta.c.name == "schema_version")).scalar()
        version = int(text) if text and text.isdigit() else None
    if runs.name in names:
        columns = {c["name"] for c in insp.get_columns(runs.name)}
        if version == SCHEMA_VERSION and columns == set(runs.c.keys()):
            return None
        if version is not None and version > SCHEMA_VERSION and not replace_newer:
            raise NewerIndex(version)
        runs.drop(conn)
        done = f"rebuilt (found schema version {version}, layout {'ours' if version else 'foreign'})"
    else:
        done = "created"
    if meta.name in names:
        meta.drop(conn)
    metadata.create_all(conn)
    conn.execute(insert(meta).values(name="schema_version", value=str(SCHEMA_VERSION)))
    return done


def upsert(dialect_name: str) -> Insert:
    """INSERT … ON CONFLICT (origin, name) DO UPDATE of every other column, for executemany."""
    stmt = sqlite.insert(runs) if dialect_name == "sqlite" else postgresql.insert(runs)
    return stmt.on_conflict_do_update(
        index_elements=[runs.c.origin, runs.c.name],
        set_={c.name: stmt.excluded[c.name] for c in runs.c if not c.primary_key},
    )


def run_row(run: StoredRun) -> dict[str, Any]:
    """The summary columns of ``run`` (not origin, name, path, size, mtime_ns)."""
    return {
        "error": None,
        "cluster": run.cluster,
        "key": run.key,
        "model": run.model,
        "started_at": run.started_at,
        "session": run.session,
        "source": run.source,
        "baseline_mark": run.baseline_mark,
        "failure": run.failure,
        "problems": tuple(run.problems),
        "metrics": dict(run.metrics),
        "samples": {k: list(v) for k, v in run.samples.items()},
        "facts": dict(run.facts),
    }


def error_row(error: str) -> dict[str, Any]:
    """The summary columns of a file that could not be read."""
    return {
        "error": error,
        **{k: None for k in (*SUMMARY_FIELDS, *JSON_FIELDS)},
    }


def stored_run(row: RowMapping | Mapping[str, Any], path: str, strings: dict[str, str]) -> StoredRun:
    """A row of :data:`SUMMARY_COLUMNS` as the summary it was made from. ``strings``: one copy of
    each name and text seen so far (the same metric names, versions and commands in every row)."""
    s = strings.setdefault
    return StoredRun(
        path=path,
        cluster=s(row["cluster"], row["cluster"]),
        key=s(row["key"], row["key"]),
        model=None if row["model"] is None else s(row["model"], row["model"]),
        started_at=float(row["started_at"]),
        session=row["session"],
        source=s(row["source"], row["source"]) if row["source"] else "suite",
        baseline_mark=bool(row["baseline_mark"]),
        failure=row["failure"],
        problems=tuple(row["problems"] or ()),
        metrics={s(k, k): float(v) for k, v in (row["metrics"] or {}).items()},
        samples={s(k, k): tuple(float(x) for x in v) for k, v in (row["samples"] or {}).items()},
        facts={s(k, k): s(str(v), str(v)) for k, v in (row["facts"] or {}).items()},
    )
