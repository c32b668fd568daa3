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
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import filelock

from pytest_pd.cluster.stale_runs import LocalAgent, RunLedger
from pytest_pd.errors import HostError

if TYPE_CHECKING:
    pass

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


def timeout_error(label: str, where: str, holder: str, timeout_s: float, fix: str) -> HostLockTimeout:
    return HostLockTimeout(
        f"could not lock {label} within {timeout_s:g} s: it is held by {holder or 'an unknown session'} "
        f"(lock file {where}). Two sessions must never run topologies on the same host at once. Wait "
        f"for that session to finish or stop it, or {fix}. A lock is released when its holder exits, "
        "so a lock file alone is never stale."
    )


class Waiter:
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
        waiter: Waiter | None = None
        while True:
            try:
                self._lock.acquire(timeout=0 if waiter is None else max(0.0, min(waiter.remaining(), 1.0)))
                break
            except filelock.Timeout:
                if waiter is None:
                    waiter = Waiter(self.label, timeout_s, say)
                waiter.note(self._holder())
                if waiter.remaining() <= 0:
                    raise timeout_error(
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
