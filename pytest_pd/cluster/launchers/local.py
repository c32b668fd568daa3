"""``launcher: local``: every process on this machine (subprocess, one process group each), one
host lock for the whole machine, servers started one after the other (each start is quick)."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_pd.cluster import host_agent
from pytest_pd.cluster.hosts import CommandResult, Proc, survived_sigkill, tail_file
from pytest_pd.cluster.launchers import HostLauncher, Say
from pytest_pd.cluster.locks import LocalHostLock, MachineLock, local_lock_dir
from pytest_pd.errors import HostError
from pytest_pd.redaction import redact_argv

if TYPE_CHECKING:
    from pytest_pd.cluster.safe_yaml import Loc
    from pytest_pd.cluster.spec import ClusterSpec


def port_in_use(address: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            return True
    return False


class LocalHost:
    """Runs processes on this machine (subprocess, one process group each)."""

    def __init__(self, name: str = "localhost") -> None:
        self.name = name

    def run(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        timeout: float = 60.0,
    ) -> CommandResult:
        try:
            done = subprocess.run(
                list(argv),
                capture_output=True,
                text=True,
                timeout=timeout,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise HostError(f"could not run {argv[0]!r} on {self.name}: {exc}") from None
        return CommandResult(done.returncode, done.stdout, done.stderr)

    def start_detached(self, name: str, argv: tuple[str, ...], env: dict[str, str], run_dir: Path) -> Proc:
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
            return None if host_agent.group_members(proc.pid) else -1
        return proc.popen.poll()

    def alive(self, proc: Proc) -> bool:
        return self.exit_code(proc) is None

    def kill_tree(self, proc: Proc, grace_s: float = 10.0) -> None:
        """SIGTERM the process group, wait up to ``grace_s``, SIGKILL what is left, confirm
        (``host_agent.kill_group``); then reap the leader, our child, so no zombie lingers."""
        left = host_agent.kill_group(proc.pid, grace_s)  # start_new_session: pid = pgid
        if left:
            raise survived_sigkill(proc, self.name, left)
        if proc.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=5.0)  # dead (a zombie at most): returns at once

    def tail_log(self, proc: Proc, lines: int = 40) -> str:
        return tail_file(proc.log_path, lines)

    def fetch_log(self, proc: Proc, dest_dir: Path) -> Path:
        return proc.log_path  # already local, in the run directory

    def ports_in_use(self, wanted: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
        return [(addr, port) for addr, port in wanted if port_in_use(addr, port)]

    def close(self) -> None:
        pass


class LocalHosts:
    """The hosts of one local bring-up: names of this machine."""

    def __init__(self, spec: ClusterSpec) -> None:
        self.spec = spec
        self._hosts: dict[str, LocalHost] = {}

    def get(self, name: str) -> LocalHost:
        if name not in self._hosts:
            self._hosts[name] = LocalHost(name)
        return self._hosts[name]

    def connect(self, names: Sequence[str]) -> None:
        for name in names:
            self.get(name)

    def addresses(self) -> dict[str, str]:
        return {}

    def machine_locks(self, names: Sequence[str], info: str) -> list[MachineLock]:
        """One lock for this machine, in the first ``lock_dir`` a host sets, waited for as long as
        the most patient host allows."""
        specs = [self.spec.hosts[n] for n in names]
        configured = next((h.lock_dir for h in specs if h.lock_dir), None)
        lock_dir = local_lock_dir(self.spec.resolve_path(configured) if configured else None)
        lock = LocalHostLock(lock_dir, "localhost", "this machine (launcher: local)", info)
        return [MachineLock(lock, max(h.lock_timeout_s for h in specs), frozenset(names))]

    def close(self) -> None:
        for host in self._hosts.values():
            with contextlib.suppress(Exception):
                host.close()
        self._hosts.clear()


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class LocalLauncher(HostLauncher):
    name = "local"
    manages_processes = True
    parallel_starts = False

    def problems(self, spec: ClusterSpec) -> list[tuple[Loc, str]]:
        return [
            (
                ("hosts", name, "address"),
                f"launcher: local runs every process on this machine, so the address must be "
                f"loopback (127.x.x.x), got {host.address!r}; use launcher: ssh for remote hosts",
            )
            for name, host in spec.hosts.items()
            if not is_loopback(host.address or "")
        ]

    def interpreter(self, configured: str | None, local_python: str) -> str:
        return os.path.expanduser(configured) if configured else local_python

    def where(self, host: str) -> str:
        return ""  # every host is this machine

    def hosts(self, spec: ClusterSpec, *, say: Say, local_python: str) -> LocalHosts:
        return LocalHosts(spec)


LAUNCHER = LocalLauncher()
