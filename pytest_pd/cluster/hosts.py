"""Where processes run. ``LocalHost`` runs them on this machine; ``SSHHost`` (cluster/ssh.py, same
interface) runs them elsewhere. Every process starts detached in its own process group and session,
with its output in a log file and its pid in a pid file, so teardown can kill the whole tree."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Protocol

from pytest_pd.errors import HostError
from pytest_pd.redaction import redact_argv


@dataclass
class Proc:
    """A process started on a host: enough to watch it, kill its tree and find its log."""

    name: str
    host: str
    pid: int
    log_path: Path
    started: float = field(default_factory=time.time)
    popen: subprocess.Popen | None = field(default=None, repr=False)
    remote_log: str | None = None  # "host:/path" of the log while it lives on a remote host

    @property
    def log_location(self) -> str:
        """Where the log is now: the remote path until teardown fetches it, else the local one."""
        return self.remote_log or str(self.log_path)


class CommandResult(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


class Host(Protocol):
    name: str

    def run(self, argv: Sequence[str], *, env: dict[str, str] | None = None,
            cwd: str | None = None, timeout: float = 60.0) -> CommandResult: ...

    def start_detached(self, name: str, argv: tuple[str, ...], env: dict[str, str],
                       run_dir: Path) -> Proc: ...

    def alive(self, proc: Proc) -> bool: ...

    def adopt(self, name: str, pid: int, run_dir: Path) -> Proc: ...

    def exit_code(self, proc: Proc) -> int | None: ...

    def kill_tree(self, proc: Proc, grace_s: float = 10.0) -> None: ...

    def tail_log(self, proc: Proc, lines: int = 40) -> str: ...

    def fetch_log(self, proc: Proc, dest_dir: Path) -> Path: ...

    def ports_in_use(self, wanted: Sequence[tuple[str, int]]) -> list[tuple[str, int]]: ...

    def close(self) -> None: ...


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def port_in_use(address: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            return True
    return False


_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def without_colours(text: str) -> str:
    """Log text without terminal colour codes (sglang-router colours its log even into a file)."""
    return _ANSI_ESCAPE.sub("", text)


def tail_file(path: Path, lines: int) -> str:
    try:
        with path.open("r", encoding="utf-8", errors="replace") as fh:
            return without_colours("".join(deque(fh, maxlen=lines)))
    except OSError:
        return ""


class LocalHost:
    """Runs processes on this machine (subprocess, one process group each)."""

    def __init__(self, name: str = "localhost") -> None:
        self.name = name

    def run(self, argv: Sequence[str], *, env: dict[str, str] | None = None,
            cwd: str | None = None, timeout: float = 60.0) -> CommandResult:
        try:
            done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                                  env={**os.environ, **(env or {})}, cwd=cwd, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise HostError(f"could not run {argv[0]!r} on {self.name}: {exc}") from None
        return CommandResult(done.returncode, done.stdout, done.stderr)

    def start_detached(self, name: str, argv: tuple[str, ...], env: dict[str, str],
                       run_dir: Path) -> Proc:
        run_dir.mkdir(parents=True, exist_ok=True)
        log_path = run_dir / f"{name}.log"
        with log_path.open("ab") as log:
            log.write(f"# {name} on {self.name}: {' '.join(redact_argv(argv))}\n".encode())
            log.flush()
            try:
                popen = subprocess.Popen(
                    list(argv),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
                    start_new_session=True,
                    cwd=run_dir,
                )
            except OSError as exc:
                raise HostError(
                    f"could not start {name} on {self.name}: {exc}. Check that {argv[0]!r} exists "
                    "and is executable (the host's `python:` key in the cluster file)."
                ) from None
        (run_dir / f"{name}.pid").write_text(f"{popen.pid}\n")
        return Proc(name=name, host=self.name, pid=popen.pid, log_path=log_path, popen=popen)

    def adopt(self, name: str, pid: int, run_dir: Path) -> Proc:
        """A process an earlier session started here (pid = its process group)."""
        return Proc(name=name, host=self.name, pid=pid, log_path=run_dir / f"{name}.log")

    def exit_code(self, proc: Proc) -> int | None:
        if proc.popen is None:  # adopted: not our child, only its group can be watched
            return None if _group_exists(proc.pid) else -1
        return proc.popen.poll()

    def alive(self, proc: Proc) -> bool:
        return self.exit_code(proc) is None

    def kill_tree(self, proc: Proc, grace_s: float = 10.0) -> None:
        """SIGTERM the process group, wait up to ``grace_s``, SIGKILL what is left, confirm."""
        pgid = proc.pid  # start_new_session: the process leads its own group
        for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if proc.popen is not None:
                    proc.popen.poll()  # reap the leader so it does not linger as a zombie
                if not _group_exists(pgid):
                    return
                time.sleep(0.05)
        raise HostError(
            f"process group {pgid} of {proc.name} on {self.name} survived SIGKILL; "
            f"inspect it with `ps -o pid,stat,cmd -g {pgid}` and kill it by hand."
        )

    def tail_log(self, proc: Proc, lines: int = 40) -> str:
        return tail_file(proc.log_path, lines)

    def fetch_log(self, proc: Proc, dest_dir: Path) -> Path:
        return proc.log_path  # already local, in the run directory

    def ports_in_use(self, wanted: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
        return [(addr, port) for addr, port in wanted if port_in_use(addr, port)]

    def close(self) -> None:
        pass
