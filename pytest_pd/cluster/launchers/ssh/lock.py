"""The host lock of an SSH host: ``flock`` on a file there, held for as long as one SSH channel
stays open, so a session that dies lets go of it with its connection."""

from __future__ import annotations

import contextlib
import shlex
import time
from typing import TYPE_CHECKING

from pytest_pd.cluster.launchers.ssh.agent import RemoteAgent
from pytest_pd.cluster.launchers.ssh.connection import SSHConnection
from pytest_pd.cluster.locks import DEFAULT_LOCK_DIR, Say, Waiter, lock_name, timeout_error
from pytest_pd.cluster.stale_runs import RunLedger
from pytest_pd.errors import HostError

if TYPE_CHECKING:
    import paramiko


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
        waiter: Waiter | None = None
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
                        raise timeout_error(
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
                        waiter = Waiter(self.label, timeout_s, say)
                    if time.monotonic() >= waiter.next_note:
                        waiter.note(self._holder())
                    if waiter.remaining() <= 0:
                        raise timeout_error(
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
