"""A real PostgreSQL server on this machine for the results-index tests (Debian's ``postgresql``
package: only its binaries; the package's own service and its cluster on port 5432 are never used).

Everything lives in one temporary folder: ``initdb`` makes a fresh cluster in ``data/``, the
server listens on 127.0.0.1 only, on a free port, with its unix socket in ``socket/`` (not
/var/run/postgresql). Local (unix socket) connections are trusted, TCP ones need a password
(scram-sha-256): the tests connect over TCP as a user with a password, the helper sets up the
database over the socket as the superuser. PostgreSQL refuses to run as root: when the tests run
as root, the folder is made in /tmp (pytest's own temp folders are private to root), owned by the
``postgres`` system user the package creates, and every binary runs as that user. ``stop`` ends
the server (``pg_ctl stop -m fast``, then SIGKILL of its process group if needed) and checks
that none of its processes is left; ``start`` again brings it back on the same port and data.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from tests.helpers import free_port

INSTALL_HINT = "install it with `apt-get install -y postgresql` (.ci/run does this)"
SERVICE_USER = "postgres"  # the system user Debian's package creates


class PostgresUnavailable(Exception):
    """PostgreSQL cannot be had here; the tests that need it skip with this reason."""


def postgres_bin() -> Path:
    """The folder of initdb, pg_ctl and postgres: the newest /usr/lib/postgresql/*/bin, else PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(os.path.realpath(initdb)).parent
    raise PostgresUnavailable(f"PostgreSQL's initdb is not installed: {INSTALL_HINT}")


def _group_alive(pgid: int) -> list[int]:
    """The pids of the processes still in process group ``pgid``."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(entry.name))
    return alive


@dataclass
class LocalPostgres:
    folder: Path
    port: int
    bindir: Path
    user: str = "pd_tests"
    password: str = "pd-S3cret-pw"
    database: str = "pd_index"
    run_as: str | None = None  # the system user the server runs as (None: this process's user)
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def socket_dir(self) -> Path:
        return self.folder / "socket"

    @property
    def log(self) -> Path:
        return self.folder / "postgres.log"

    @property
    def url(self) -> str:
        """``postgresql://USER:PASSWORD@127.0.0.1:PORT/DB``: what ``--pd-results`` would take."""
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    def url_with(self, **parts: str | int) -> str:
        """The URL with some of user, password, port, database changed."""
        p = {"user": self.user, "password": self.password, "port": self.port, "database": self.database}
        p.update(parts)
        return f"postgresql://{p['user']}:{p['password']}@127.0.0.1:{p['port']}/{p['database']}"

    # ---------------------------------------------------------------------------- processes

    def _run(self, *argv: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(self.bindir / argv[0]), *argv[1:]],
            capture_output=True,
            text=True,
            timeout=timeout,
            user=self.run_as,
            group=self.run_as,
            extra_groups=[] if self.run_as else None,
            env=self._env(),
            cwd=self.folder,
        )
        return done

    def _env(self) -> dict[str, str]:
        return {"PATH": f"{self.bindir}:/usr/bin:/bin", "LC_ALL": "C", "TZ": "UTC", "HOME": str(self.folder)}

    def initdb(self) -> None:
        pwfile = self.folder / "superuser.pw"
        pwfile.write_text("unused-superuser-pw\n")
        self._chown(pwfile)
        done = self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", f"--pwfile={pwfile}", "-E", "UTF8",
            "--no-locale", "--auth-local=trust", "--auth-host=scram-sha-256", "--no-instructions",
        )  # fmt: skip
        if done.returncode != 0:
            raise PostgresUnavailable(f"initdb failed ({done.returncode}): {done.stderr[-2000:]}")

    def start(self, timeout: float = 60.0) -> None:
        """Start the server (in its own process group) and wait until it takes connections."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        log = open(self.log, "ab")  # noqa: SIM115 - handed to the server, closed below
        try:
            self.proc = subprocess.Popen(
                [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
                 "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.socket_dir}",
                 "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=40",
                 "-c", "shared_buffers=16MB", "-c", "logging_collector=off"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=self._env(),
                cwd=self.folder, user=self.run_as, group=self.run_as,
                extra_groups=[] if self.run_as else None,
            )  # fmt: skip
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self.superuser():
                    return
            except psycopg.OperationalError as exc:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    tail = self.log.read_text(errors="replace")[-3000:]
                    self.stop()
                    raise PostgresUnavailable(
                        f"postgres did not come up on 127.0.0.1:{self.port} ({exc}); log {self.log}:\n{tail}"
                    ) from exc
            time.sleep(0.1)

    def superuser(self) -> psycopg.Connection:
        """A connection as the superuser over the unix socket (trusted), autocommit."""
        return psycopg.connect(
            host=str(self.socket_dir), port=self.port, user="postgres", dbname="postgres",
            autocommit=True, connect_timeout=2,
        )  # fmt: skip

    def create_user_and_database(self) -> None:
        with self.superuser() as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(self.user), sql.Literal(self.password)
                )
            )
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(self.database), sql.Identifier(self.user)
                )
            )

    def reset_database(self) -> None:
        """A fresh, empty database for the next test (other sessions' connections are ended)."""
        with self.superuser() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.database))
            )
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(self.database), sql.Identifier(self.user)
                )
            )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def leftover(self) -> list[int]:
        """Processes of the server still alive (its process group), after ``stop``."""
        return _group_alive(self.proc.pid) if self.proc is not None else []

    def stop(self) -> None:
        """``pg_ctl stop -m fast``; SIGKILL to the process group if it is not gone in 20 s.
        Asserts nothing of the server is left running."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w", "-t", "20", timeout=40)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while self.leftover() and time.monotonic() < deadline:  # backends exit after the postmaster
            time.sleep(0.05)
        left = self.leftover()
        if left:
            os.killpg(self.proc.pid, signal.SIGKILL)
        assert not left, f"postgres processes left running after stop: {left}"

    def destroy(self) -> None:
        """Stop the server and remove its folder."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def _chown(self, path: Path) -> None:
        if self.run_as:
            info = pwd.getpwnam(self.run_as)
            os.chown(path, info.pw_uid, info.pw_gid)


def start_postgres(base: Path | None = None) -> LocalPostgres:
    """A fresh PostgreSQL cluster with a database and a user with a password, running.

    ``base``: where to make its folder when not running as root (as root it is always made in
    the system temp folder, which the ``postgres`` user can reach)."""
    bindir = postgres_bin()
    for binary in ("initdb", "pg_ctl", "postgres"):
        if not (bindir / binary).exists():
            raise PostgresUnavailable(f"{bindir / binary} is missing: {INSTALL_HINT}")
    run_as = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVICE_USER)
        except KeyError as exc:
            raise PostgresUnavailable(
                f"running as root and there is no {SERVICE_USER!r} user to run PostgreSQL as: {INSTALL_HINT}"
            ) from exc
        run_as = SERVICE_USER
        base = None
    folder = Path(tempfile.mkdtemp(prefix="pytest-pd-pg-", dir=base))
    server = LocalPostgres(folder=folder, port=free_port(), bindir=bindir, run_as=run_as)
    try:
        server.socket_dir.mkdir()
        for path in (folder, server.socket_dir):
            server._chown(path)
        server.initdb()
        server.start()
        server.create_user_and_database()
    except BaseException:
        server.destroy()
        raise
    return server
