"""Where the results index lives and how it is reached: the SQLite file in the results folder
(``url`` None) or a PostgreSQL database (``postgresql://USER:PASSWORD@HOST:PORT/DB``, through
psycopg 3), an SQLAlchemy engine for it with short, bounded timeouts, and :class:`StoreError`, what
every failure of the database becomes (the URL's password redacted, what to do).

SQLite: WAL journal (readers never wait for a writer), a busy timeout (a second session writing
at once waits up to ``timeout_s`` instead of failing). PostgreSQL: ``connect_timeout``, TCP
keepalives and ``tcp_user_timeout`` (a server that vanishes mid-query is noticed in about 10 s,
not never) and, through libpq's ``options``, ``statement_timeout`` and ``lock_timeout`` (a URL
with its own ``options`` query parameter keeps it: ``?options=`` for a pgbouncer that refuses
them)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from pytest_pd.errors import PdError
from pytest_pd.redaction import REDACTED, scrub

INDEX_FILENAME = ".pytest-pd-index.sqlite"
"""The SQLite index's file in the results folder (with ``-wal`` and ``-shm`` beside it while open)."""
LOCK_FILENAME = ".pytest-pd-index.lock"
"""Held while a session creates or rebuilds the SQLite index (``filelock``)."""
SQLITE_TIMEOUT_S = 10.0  # how long a writer waits for another session's write (ms-long each)
POSTGRES_TIMEOUT_S = 5.0  # connect_timeout
POSTGRES_STATEMENT_TIMEOUT_MS = 60_000
POSTGRES_LOCK_TIMEOUT_MS = 15_000

_POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
_SQLITE_SCHEMES = ("sqlite", "sqlite+pysqlite")
_AUTH_STATES = ("28P01", "28000")  # invalid_password, invalid_authorization_specification
_SLOW_STATES = ("57014", "55P03")  # query_canceled (statement_timeout), lock_not_available
_CONNECTION_CLASSES = ("08", "57", "53", "58", "XX")  # connection, shutdown, resources, system
_AUTH_WORDS = ("authentication failed", "no pg_hba.conf entry", "password authentication")


class StoreError(PdError):
    """The results index (the SQL database beside the JSON results files) cannot be used:
    unreachable, refused the login, went away during the session, stayed locked, or an
    unsupported URL. The JSON results files do not depend on it."""


@dataclass(frozen=True)
class Target:
    """A results index's database: SQLAlchemy's URL, how it is shown (password redacted), and
    the results folder it indexes."""

    url: URL
    shown: str
    results_dir: Path
    timeout_s: float
    password: str | None = None

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    @property
    def sqlite_file(self) -> Path:
        assert self.is_sqlite and self.url.database
        return Path(self.url.database)

    def advice(self) -> str:
        """What a user can do, for the end of every message."""
        if self.is_sqlite:
            return (
                f"The run's JSON results files are still written to {self.results_dir}; the index "
                f"is derived from them: delete {self.shown} to have it rebuilt, or point "
                "--pd-results at a PostgreSQL database."
            )
        return (
            f"The run's JSON results files are still written to {self.results_dir}; point "
            "--pd-results at a database that works, or leave --pd-results out to use the local "
            "SQLite index in the results folder."
        )


_USERINFO = re.compile(r"^(?P<head>[\w+.-]+://[^:/@]*:)(?P<password>[^@/]*)@")


def shown_url(url: str, password: str | None = None) -> str:
    """``url`` as the user wrote it, with its password (as written, and decoded) replaced."""
    text = _USERINFO.sub(lambda m: f"{m['head']}{REDACTED}@", url)
    return scrub(text, [password]) if password else text


def target(results_dir: Path, url: str | None, timeout_s: float | None = None) -> Target:
    """The database ``url`` names (None or "": the SQLite file in ``results_dir``)."""
    if not url:
        file = Path(results_dir).absolute() / INDEX_FILENAME
        sa = URL.create("sqlite+pysqlite", database=str(file))
        return Target(sa, str(file), results_dir, timeout_s or SQLITE_TIMEOUT_S)
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise StoreError(_unsupported(url, None, results_dir, "not a database URL")) from exc
    password = parsed.password if isinstance(parsed.password, str) else None
    shown = shown_url(url, password)
    scheme = parsed.drivername
    if scheme in _POSTGRES_SCHEMES:
        if not parsed.host and not parsed.query.get("host"):
            raise StoreError(_unsupported(url, password, results_dir, "no host in the URL"))
        sa = parsed.set(drivername="postgresql+psycopg")
        return Target(sa, shown, results_dir, timeout_s or POSTGRES_TIMEOUT_S, password)
    if scheme in _SQLITE_SCHEMES and parsed.database and parsed.database != ":memory:":
        sa = parsed.set(drivername="sqlite+pysqlite")
        return Target(sa, shown, results_dir, timeout_s or SQLITE_TIMEOUT_S)
    raise StoreError(_unsupported(url, password, results_dir, f"unsupported scheme {scheme!r}"))


def _unsupported(url: str, password: str | None, results_dir: Path, why: str) -> str:
    return (
        f"results index: cannot use {shown_url(url, password)} ({why}): --pd-results takes "
        "postgresql://USER:PASSWORD@HOST:PORT/DATABASE (PostgreSQL through psycopg 3; "
        "postgresql+psycopg:// too) or nothing (the SQLite index in the results folder). The run's "
        f"JSON results files are still written to {results_dir}; fix the URL, or leave "
        "--pd-results out to use the local SQLite index."
    )


def make_engine(t: Target) -> Engine:
    """An engine for ``t`` with every wait bounded (see the module's docstring)."""
    if t.is_sqlite:
        engine = create_engine(
            t.url,
            json_serializer=_json_dumps,
            json_deserializer=orjson.loads,
            connect_args={"timeout": t.timeout_s, "check_same_thread": False},
            pool_size=2,
            max_overflow=2,
            pool_timeout=t.timeout_s,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    connect_args: dict[str, Any] = {
        "connect_timeout": max(2, math.ceil(t.timeout_s)),
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 3,
        "tcp_user_timeout": 10_000,
        "application_name": "pytest-pd results index",
    }
    if "options" not in t.url.query:
        connect_args["options"] = (
            f"-c statement_timeout={POSTGRES_STATEMENT_TIMEOUT_MS} -c lock_timeout={POSTGRES_LOCK_TIMEOUT_MS}"
        )
    return create_engine(
        t.url,
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
        connect_args=connect_args,
        pool_size=2,
        max_overflow=2,
        pool_timeout=t.timeout_s * 2,
    )


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # configuration of the connection, not a query: SQLAlchemy has no construct for PRAGMA
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")  # the index is derived data: WAL's safe mode
    finally:
        cursor.close()


# ---------------------------------------------------------------------------- errors


def driver_detail(exc: BaseException, t: Target) -> str:
    """The driver's message of ``exc`` on one line, the password scrubbed."""
    orig = getattr(exc, "orig", None) or exc
    primary = getattr(getattr(orig, "diag", None), "message_primary", None)  # psycopg: no "LINE 2: …"
    text = " ".join(str(primary or orig).split()) or type(orig).__name__
    return scrub(text, [t.password]) if t.password else text


def is_auth_failure(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", None) or exc
    if getattr(orig, "sqlstate", None) in _AUTH_STATES:
        return True
    text = str(orig).lower()
    return any(word in text for word in _AUTH_WORDS)


def is_locked(exc: BaseException) -> bool:
    text = str(getattr(exc, "orig", None) or exc).lower()
    return "database is locked" in text or "database table is locked" in text or "busy" in text


def store_error(t: Target, exc: BaseException, doing: str, *, connected: bool) -> StoreError:
    """``exc`` (a database failure while ``doing`` something) as a one-paragraph StoreError."""
    detail = driver_detail(exc, t)
    state = getattr(getattr(exc, "orig", None) or exc, "sqlstate", None)
    if t.is_sqlite:
        if is_locked(exc):
            what = (
                f"results index: the SQLite index {t.shown} stayed locked by another session for "
                f"more than {t.timeout_s:g} s while {doing} ({detail}); another pytest-pd session "
                "or a stuck process holds it"
            )
        else:
            what = f"results index: the SQLite index {t.shown} cannot be used while {doing} ({detail})"
    elif is_auth_failure(exc):
        what = (
            f"results index: PostgreSQL at {t.shown} refused the login while {doing} ({detail}); "
            "check the user and password in --pd-results"
        )
    elif state == "3D000" or ("does not exist" in detail and "database" in detail):
        what = (
            f"results index: PostgreSQL at {t.shown} has no such database ({detail}); create it "
            "(createdb) or fix the database name in --pd-results"
        )
    elif state == "42501":
        what = (
            f"results index: PostgreSQL at {t.shown} denied the user a right it needs while {doing} "
            f"({detail}); the user must be able to create tables in the database (GRANT CREATE ON "
            "SCHEMA public) or the tables must exist"
        )
    elif state in _SLOW_STATES:
        what = (
            f"results index: PostgreSQL at {t.shown} took too long while {doing} ({detail}); "
            "another client may hold a lock on the index's tables"
        )
    elif state and state[:2] not in _CONNECTION_CLASSES:
        what = f"results index: PostgreSQL at {t.shown} failed while {doing} ({detail})"
    elif connected:
        what = (
            f"results index: the PostgreSQL server at {t.shown} went away during the session, "
            f"while {doing} ({detail}); the next session's index sync picks up what was missed"
        )
    else:
        what = (
            f"results index: cannot reach PostgreSQL at {t.shown} while {doing} ({detail}); check "
            f"that the server runs and that this host can reach it (connect timeout {t.timeout_s:g} s)"
        )
    return StoreError(f"{what}. {t.advice()}")
