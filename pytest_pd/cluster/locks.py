"""Host locks: two sessions (CI jobs, xdist workers, a live baseline) never run topologies on the
same host at once. A bring-up takes one lock per machine before it starts anything and releases it
after teardown.

- This machine (``launcher: local``): a ``filelock`` file, ``<lock_dir>/localhost.lock``.
- An SSH host: ``flock`` on ``<lock_dir>/<address>.lock`` on the host itself, held by a remote
  ``flock … cat`` that lives exactly as long as its SSH channel: if the session dies, the connection
  closes and the lock is released with it.

Next to each lock file, ``*.holder`` names who holds it and since when, for the waiting side's
messages, and ``*.runs/`` records the runs that took it, so that the next holder finds and stops a
run whose session died without teardown (``stale_runs``).

The default lock folder is per user: ``$PYTEST_PD_LOCK_DIR`` or ``~/.cache/pytest-pd/locks``
here, ``~/.cache/pytest-pd/locks`` on SSH hosts; ``hosts.NAME.lock_dir`` overrides it (point it at a
shared folder when several users share the machines).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import shlex
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import filelock

from pytest_pd.cluster.stale_runs import LocalAgent, RemoteAgent, RunLedger
from pytest_pd.errors import HostError

if TYPE_CHECKING:
    import paramiko

    from pytest_pd.cluster.launchers.ssh.connection import SSHConnection

Say = Callable[[str], None]

DEFAULT_LOCK_DIR = "~/.cache/pytest-pd/locks"
NOTE_EVERY_S = 15.0


class HostLockTimeout(HostError):
    """Another session kept a host for longer than the lock timeout."""


def owner_info() -> str:
    return f"pytest-pd pid {os.getpid()} on {socket.gethostname()} (user {getpass.getuser()})"


def holder_info(cluster: str, run_dir: Path) -> str:
    """Who we are, written next to a lock we hold: the waiting side shows it."""
    since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    return f"{owner_info()}, cluster {cluster}, run {run_dir}, since {since}"


def lock_name(address: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", address) or "host"


def local_lock_dir(configured: str | None) -> Path:
    return Path(configured or os.environ.get("PYTEST_PD_LOCK_DIR") or DEFAULT_LOCK_DIR).expanduser()


class HostLock(Protocol):
    key: str
    label: str

    def acquire(self, timeout_s: float, say: Say) -> None: ...

    def release(self) -> None: ...

    def ledger(self) -> RunLedger:
        """The runs recorded next to this lock (see ``stale_runs``)."""
        ...

    def holder_now(self) -> str | None:
        """Who holds the lock right now (None: nobody), without waiting."""
        ...


@dataclass
class MachineLock:
    """The host lock of one machine, how long to wait for it, and the cluster's hosts on it."""

    lock: HostLock
    timeout_s: float
    hosts: frozenset[str]


def _timeout_error(label: str, where: str, holder: str, timeout_s: float, fix: str) -> HostLockTimeout:
    return HostLockTimeout(
        f"could not lock {label} within {timeout_s:g} s: it is held by {holder or 'an unknown session'} "
        f"(lock file {where}). Two sessions must never run topologies on the same host at once. Wait "
        f"for that session to finish or stop it, or {fix}. A lock is released when its holder exits, "
        "so a lock file alone is never stale."
    )


class _Waiter:
    """Progress while waiting: who holds it, since when, how long we have waited."""

    def __init__(self, label: str, timeout_s: float, say: Say) -> None:
        self.label, self.timeout_s, self.say = label, timeout_s, say
        self.start = time.monotonic()
        self.next_note = 0.0
        self.last_holder = ""

    def note(self, holder: str) -> None:
        now = time.monotonic()
        if holder:
            self.last_holder = holder
        if now < self.next_note:
            return
        waited = now - self.start
        head = "waiting for" if waited < 1 else f"still waiting ({waited:.0f} s) for"
        self.say(
            f"{head} {self.label}: in use by {self.last_holder or 'another session'}; "
            f"waiting up to {self.timeout_s:g} s"
        )
        self.next_note = now + NOTE_EVERY_S

    def remaining(self) -> float:
        return self.timeout_s - (time.monotonic() - self.start)


class LocalHostLock:
    """A lock on this machine (``filelock``)."""

    def __init__(self, lock_dir: Path, key: str, label: str, info: str) -> None:
        self.key, self.label, self.info = key, label, info
        lock_dir.mkdir(parents=True, exist_ok=True)
        self.path = lock_dir / f"{lock_name(key)}.lock"
        self.holder_path = lock_dir / f"{lock_name(key)}.holder"
        self._lock = filelock.FileLock(str(self.path), thread_local=False)

    def _holder(self) -> str:
        try:
            return self.holder_path.read_text(encoding="utf-8").strip()
        except OSError:
            return ""

    def acquire(self, timeout_s: float, say: Say) -> None:
        waiter: _Waiter | None = None
        while True:
            try:
                self._lock.acquire(timeout=0 if waiter is None else max(0.0, min(waiter.remaining(), 1.0)))
                break
            except filelock.Timeout:
                if waiter is None:
                    waiter = _Waiter(self.label, timeout_s, say)
                waiter.note(self._holder())
                if waiter.remaining() <= 0:
                    raise _timeout_error(
                        self.label,
                        str(self.path),
                        waiter.last_holder,
                        timeout_s,
                        "raise hosts.*.lock_timeout_s in the cluster file",
                    ) from None
        self.holder_path.write_text(self.info + "\n", encoding="utf-8")

    def release(self) -> None:
        if self._lock.is_locked:
            with contextlib.suppress(OSError):
                self.holder_path.write_text("", encoding="utf-8")
            self._lock.release(force=True)

    def ledger(self) -> RunLedger:
        return RunLedger(LocalAgent(), str(self.path.with_suffix(".runs")), self.label)

    def holder_now(self) -> str | None:
        if self._lock.is_locked:
            return self.info
        try:
            self._lock.acquire(timeout=0)
        except filelock.Timeout:
            return self._holder() or "another session"
        self._lock.release(force=True)
        return None


# Whether the lock is held right now, and by whom (the holder file), without waiting.
_REMOTE_PROBE = """
f={dir}/{name}.lock
[ -e "$f" ] || {{ echo FREE; exit 0; }}
exec 9>>"$f" || exit 4
if flock -n 9; then echo FREE; else echo HELD; cat {dir}/{name}.holder 2>/dev/null; fi
"""

# The remote side: open the lock file on fd 9, try it, report BUSY and block if it is taken, then
# say LOCKED and hold it until our stdin (the SSH channel) closes.
_REMOTE = """
d={dir}; f="$d"/{name}.lock; h="$d"/{name}.holder
mkdir -p "$d" || exit 4
command -v flock >/dev/null 2>&1 || {{ echo NOFLOCK; exit 5; }}
exec 9>>"$f" || exit 4
if ! flock -n 9; then
  echo BUSY
  flock -w {timeout} 9 || {{ echo TIMEOUT; exit 3; }}
fi
printf '%s\\n' {info} > "$h"
echo LOCKED
cat > /dev/null
: > "$h"
"""


class RemoteHostLock:
    """A lock on an SSH host: ``flock`` held for as long as one SSH channel stays open."""

    def __init__(
        self,
        conn: SSHConnection,
        lock_dir: str | None,
        key: str,
        label: str,
        info: str,
        python: str = "python3",
    ) -> None:
        self.conn = conn
        self.python = python  # runs the ledger's agent there
        self.key, self.label, self.info = key, label, info
        self.lock_dir = lock_dir or DEFAULT_LOCK_DIR
        self._chan: paramiko.Channel | None = None
        self._dir: str | None = None

    @property
    def where(self) -> str:
        return f"{self.conn.target.name}:{self._dir or self.lock_dir}/{lock_name(self.key)}.lock"

    @property
    def folder(self) -> str:
        if self._dir is None:
            self._dir = self.conn.expand(self.lock_dir).rstrip("/")
        return self._dir

    def ledger(self) -> RunLedger:
        return RunLedger(
            RemoteAgent(self.conn, self.python), f"{self.folder}/{lock_name(self.key)}.runs", self.label
        )

    def holder_now(self) -> str | None:
        if self.held:
            return self.info
        script = _REMOTE_PROBE.format(dir=shlex.quote(self.folder), name=shlex.quote(lock_name(self.key)))
        out = self.conn.run_script(script, timeout=15.0).stdout
        return None if out.startswith("FREE") else (out[4:].strip() or "another session")

    def _holder(self) -> str:
        path = f"{self.folder}/{lock_name(self.key)}.holder"
        try:
            return self.conn.run_script(
                f"cat {shlex.quote(path)} 2>/dev/null || true", timeout=15.0
            ).stdout.strip()
        except HostError:
            return ""

    def acquire(self, timeout_s: float, say: Say) -> None:
        script = _REMOTE.format(
            dir=shlex.quote(self.folder),
            name=shlex.quote(lock_name(self.key)),
            timeout=f"{max(timeout_s, 0.0) + 2:.0f}",
            info=shlex.quote(self.info),
        )
        chan = self.conn.open_session()
        chan.exec_command("sh -c " + shlex.quote(script))
        chan.settimeout(0.5)
        waiter: _Waiter | None = None
        buf = b""
        fix = "raise hosts.*.lock_timeout_s in the cluster file"
        try:
            while True:
                try:
                    data = chan.recv(1024)
                except TimeoutError:
                    data = None
                if data == b"":
                    code = chan.recv_exit_status()
                    err = chan.recv_stderr(4096).decode(errors="replace").strip()
                    if b"NOFLOCK" in buf:
                        raise HostError(
                            f"host {self.conn.target.name} has no `flock` command, which "
                            "host locks need; install util-linux there."
                        )
                    if b"TIMEOUT" in buf:
                        raise _timeout_error(
                            self.label, self.where, waiter.last_holder if waiter else "", timeout_s, fix
                        )
                    raise HostError(
                        f"could not lock {self.label} ({self.where}): exit code {code}"
                        f"{': ' + err if err else ''}. Check that the lock folder "
                        "(hosts.*.lock_dir) is writable."
                    )
                if data:
                    buf += data
                if b"LOCKED" in buf:
                    break
                if b"BUSY" in buf:
                    if waiter is None:
                        waiter = _Waiter(self.label, timeout_s, say)
                    if time.monotonic() >= waiter.next_note:
                        waiter.note(self._holder())
                    if waiter.remaining() <= 0:
                        raise _timeout_error(
                            self.label, self.where, waiter.last_holder or self._holder(), timeout_s, fix
                        )
        except BaseException:
            chan.close()
            raise
        chan.settimeout(None)
        self._chan = chan

    def release(self) -> None:
        chan, self._chan = self._chan, None
        if chan is None:
            return
        with contextlib.suppress(Exception):
            chan.shutdown_write()  # the remote `cat` ends, the shell clears the holder and exits
            deadline = time.monotonic() + 5.0
            while not chan.exit_status_ready() and time.monotonic() < deadline:
                time.sleep(0.02)
        chan.close()

    def reacquire(self, say: Say) -> None:
        """After a reconnect the old channel (and with it the lock) is gone: take it again."""
        if self._chan is None:
            return
        self._chan.close()
        self._chan = None
        try:
            self.acquire(5.0, say)
            say(f"{self.label}: lock taken again after the reconnect")
        except HostError as exc:
            say(
                f"WARNING: {self.label}: the host lock was lost with the connection and could not "
                f"be taken again: {exc}"
            )

    @property
    def held(self) -> bool:
        chan = self._chan
        return chan is not None and not chan.closed and not chan.exit_status_ready()
