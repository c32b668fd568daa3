"""One SSH connection per machine and bring-up, shared by every host name that points at it: reused
by every command, kept alive, reconnected once when it drops. Every remote command is a POSIX sh
script run by ``sh -c`` whatever the login shell is."""

from __future__ import annotations

import select
import shlex
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paramiko

from pytest_pd.cluster.hosts import CommandResult
from pytest_pd.cluster.launchers.ssh.config import SSHTarget
from pytest_pd.cluster.launchers.ssh.dial import open_client
from pytest_pd.errors import HostError

Say = Callable[[str], None]

MAX_CHANNELS = 8  # below OpenSSH's default MaxSessions (10): the host lock holds one more


class _Dropped(Exception):
    """The transport died under a command (the caller may reconnect once)."""


class SSHConnection:
    """One SSH connection to a machine, shared by every host name that points at it."""

    def __init__(self, target: SSHTarget, say: Say = print) -> None:
        self.target = target
        self.say = say
        self.reconnects = 0
        self._client: paramiko.SSHClient | None = None
        self._hops: list[paramiko.SSHClient] = []
        self._lock = threading.RLock()
        self._channels = threading.BoundedSemaphore(MAX_CHANNELS)
        self._home: str | None = None
        self._on_reconnect: list[Callable[[], None]] = []
        self._closed = False

    # -- connecting

    def connect(self) -> None:
        with self._lock:
            if self._closed:
                raise HostError(f"connection to host {self.target.name} was closed")
            if self._client is None:
                self._open()
            elif not self._active():
                self._reconnect("the transport is no longer active")

    def _active(self) -> bool:
        transport = self._client.get_transport() if self._client else None
        return bool(transport and transport.is_active())

    def _open(self) -> None:
        self._drop()
        self._client, self._hops = open_client(self.target, self.say)

    def _drop(self) -> None:
        for client in [self._client, *reversed(self._hops)]:
            if client is not None:
                try:
                    client.close()
                except Exception:  # noqa: BLE001 (closing a dead connection)
                    pass
        self._client, self._hops = None, []

    def _reconnect(self, why: str) -> None:
        with self._lock:
            if self._active():
                return  # another thread already reconnected
            self.say(f"host {self.target.name}: connection lost ({why}); reconnecting once")
            self.reconnects += 1
            try:
                self._open()
            except HostError as exc:
                raise HostError(
                    f"host {self.target.name}: the SSH connection dropped ({why}) and "
                    f"reconnecting failed: {exc}"
                ) from None
        for hook in list(self._on_reconnect):
            hook()

    def on_reconnect(self, hook: Callable[[], None]) -> None:
        self._on_reconnect.append(hook)

    def drop_for_test(self) -> None:
        """Close the transport under the connection's feet, as a network failure would."""
        transport = self._client.get_transport() if self._client else None
        if transport is not None:
            transport.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._drop()

    # -- channels

    def open_session(self) -> paramiko.Channel:
        """A new session channel, reconnecting once when the connection has dropped."""
        self.connect()
        for attempt in (0, 1):
            with self._lock:
                client = self._client
            transport = client.get_transport() if client else None
            try:
                if transport is None or not transport.is_active():
                    raise _Dropped("transport not active")
                return transport.open_session(timeout=self.target.connect_timeout_s)
            except (_Dropped, paramiko.SSHException, EOFError, OSError) as exc:
                if attempt or (transport is not None and transport.is_active()):
                    raise HostError(f"host {self.target.name}: cannot open an SSH channel: {exc}") from None
                self._reconnect(str(exc) or type(exc).__name__)
        raise AssertionError("unreachable")

    def run_script(
        self,
        script: str,
        *,
        timeout: float = 60.0,
        retry: bool = True,
        stdin: bytes | None = None,
        private: bool = False,
    ) -> CommandResult:
        """Run a POSIX sh script (already quoted) and collect its output. With ``retry``, a
        connection that drops mid-command is reconnected once and the command run again. A
        ``private`` script (one holding env values) goes on stdin, so its text never shows in
        the host's process list."""
        command = "sh -c " + shlex.quote(script)
        if private:
            assert stdin is None, "a private script takes stdin itself"
            command, stdin = "sh -s", script.encode()
        with self._channels:
            for attempt in (0, 1):
                chan = self.open_session()
                try:
                    return self._collect(chan, command, timeout, stdin)
                except _Dropped as exc:
                    if attempt or not retry:
                        raise HostError(
                            f"host {self.target.name}: the SSH connection dropped "
                            f"while running a command ({exc})."
                        ) from None
                    self._reconnect(str(exc))
                finally:
                    chan.close()
        raise AssertionError("unreachable")

    def _collect(
        self, chan: paramiko.Channel, command: str, timeout: float, stdin: bytes | None
    ) -> CommandResult:
        try:
            chan.exec_command(command)
            if stdin:
                chan.sendall(stdin)
            chan.shutdown_write()
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise _Dropped(str(exc) or type(exc).__name__) from None
        out, err = bytearray(), bytearray()
        deadline = time.monotonic() + timeout
        transport = chan.get_transport()
        while True:
            while chan.recv_ready():
                out += chan.recv(65536)
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(65536)
            if chan.exit_status_ready() and chan.eof_received:
                while chan.recv_ready():
                    out += chan.recv(65536)
                while chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                break
            if chan.closed or transport is None or not transport.is_active():
                if chan.exit_status_ready():
                    break
                raise _Dropped("connection closed")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise HostError(
                    f"host {self.target.name}: a remote command did not finish within "
                    f"{timeout:g} s: {command[:200]}"
                )
            select.select([chan], [], [], min(remaining, 0.5))
        return CommandResult(
            chan.recv_exit_status(), out.decode(errors="replace"), err.decode(errors="replace")
        )

    def home(self) -> str:
        if self._home is None:
            res = self.run_script('printf %s "$HOME"')
            if res.returncode != 0 or not res.stdout.startswith("/"):
                raise HostError(
                    f"host {self.target.name}: cannot find the remote home folder "
                    f"({res.stderr.strip() or res.stdout.strip()!r})."
                )
            self._home = res.stdout
        return self._home

    def expand(self, path: str) -> str:
        """A remote path with a leading ``~`` replaced by the remote home folder."""
        if path == "~":
            return self.home()
        if path.startswith("~/"):
            return self.home().rstrip("/") + path[1:]
        return path

    def get_file(self, remote: str, local: Path) -> None:
        with self._channels:
            self.connect()
            assert self._client is not None
            sftp = self._client.open_sftp()
            channel = sftp.get_channel()
            if channel is not None:  # a dead peer must not stall teardown for minutes
                channel.settimeout(60.0)
            try:
                sftp.get(remote, str(local))
            finally:
                sftp.close()
