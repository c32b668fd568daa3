"""Where processes run: the ``Host`` interface every launcher's hosts share (``LocalHost`` in
launchers/local.py, ``SSHHost`` in launchers/ssh/host.py), and what it hands back. Every process
starts detached in its own process group and session, with its output in a log file and its pid in
a pid file, so teardown can kill the whole tree."""

from __future__ import annotations

import re
import subprocess
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from pytest_pd.errors import HostError


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

    def run(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        timeout: float = 60.0,
    ) -> CommandResult: ...

    def start_detached(
        self, name: str, argv: tuple[str, ...], env: dict[str, str], run_dir: Path
    ) -> Proc: ...

    def alive(self, proc: Proc) -> bool: ...

    def adopt(self, name: str, pid: int, run_dir: Path) -> Proc: ...

    def exit_code(self, proc: Proc) -> int | None: ...

    def kill_tree(self, proc: Proc, grace_s: float = 10.0) -> None: ...

    def tail_log(self, proc: Proc, lines: int = 40) -> str: ...

    def fetch_log(self, proc: Proc, dest_dir: Path) -> Path: ...

    def ports_in_use(self, wanted: Sequence[tuple[str, int]]) -> list[tuple[str, int]]: ...

    def close(self) -> None: ...


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


def survived_sigkill(proc: Proc, where: str, left: list[dict[str, Any]], there: str = "") -> HostError:
    """The error for a process group that outlived ``kill_tree``; ``left``: its survivors
    (``host_agent.kill_group``: pid, state, cmd), named in the message."""
    survivors = "; ".join(f"pid {p['pid']} ({p['state']}) {p['cmd']}" for p in left)
    return HostError(
        f"process group {proc.pid} of {proc.name} on {where} survived SIGKILL ({survivors}); "
        f"inspect it{there} with `ps -o pid,stat,cmd -g {proc.pid}` and kill it by hand."
    )
