"""``launcher: ssh``: processes on the cluster file's hosts over SSH (paramiko; honours
~/.ssh/config, the agent and known_hosts). Host names that reach the same account on the same
machine share one connection for the whole bring-up; each machine has its own remote host lock;
servers start all at once (each start is a round trip)."""

from __future__ import annotations

import contextlib
import functools
import typing
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from pytest_pd.cluster.launchers import HostLauncher, Say
from pytest_pd.cluster.launchers.ssh.config import resolve_target
from pytest_pd.cluster.launchers.ssh.connection import SSHConnection
from pytest_pd.cluster.launchers.ssh.host import SSHHost
from pytest_pd.cluster.launchers.ssh.lock import RemoteHostLock
from pytest_pd.cluster.locks import MachineLock

if TYPE_CHECKING:
    from pytest_pd.cluster.safe_yaml import Loc
    from pytest_pd.cluster.spec import ClusterSpec


class SSHHosts:
    """The hosts of one SSH bring-up and the connections they share."""

    def __init__(self, spec: ClusterSpec, say: Say) -> None:
        self.spec = spec
        self.say = say
        self._hosts: dict[str, SSHHost] = {}
        self._conns: dict[object, SSHConnection] = {}

    def get(self, name: str) -> SSHHost:
        if name not in self._hosts:
            host_spec = self.spec.hosts[name]
            target = resolve_target(
                name,
                host_spec,
                resolve_path=self.spec.resolve_path,
                source=str(self.spec.source or "the cluster file"),
            )
            conn = self._conns.get(target.key)
            if conn is None:
                conn = self._conns[target.key] = SSHConnection(target, say=self.say)
            self._hosts[name] = SSHHost(
                name, host_spec, conn, python=LAUNCHER.interpreter(host_spec.python, "python")
            )
        return self._hosts[name]

    def connect(self, names: Sequence[str]) -> None:
        """Open every connection at once: unreachable hosts, unknown host keys and refused logins
        fail here."""
        hosts = [self.get(name) for name in names]
        conns = list({id(h.conn): h.conn for h in hosts}.values())
        if not conns:
            return
        with ThreadPoolExecutor(max_workers=len(conns)) as pool:
            futures = [pool.submit(conn.connect) for conn in conns]
            errors = [f.exception() for f in futures if f.exception() is not None]
        if errors:
            raise typing.cast(BaseException, errors[0])
        for conn in conns:
            self.say(f"{self.spec.label}: connected to {conn.target.name} ({conn.target.where})")

    def addresses(self) -> dict[str, str]:
        return {}

    def machine_locks(self, names: Sequence[str], info: str) -> list[MachineLock]:
        """One lock per machine (the address as dialled and as the cluster file names it); a
        lock lost with a dropped connection is taken again once it reconnects."""
        wanted: dict[str, MachineLock] = {}
        for name in names:
            host = self.get(name)
            key = f"{host.conn.target.hostname}:{host.address}"
            if key in wanted:
                wanted[key].hosts |= {name}
                continue
            lock = RemoteHostLock(
                host.conn,
                host.spec.lock_dir,
                host.address,
                f"host {name} ({host.address})",
                info,
                python=host.python,
            )
            host.conn.on_reconnect(functools.partial(lock.reacquire, self.say))
            wanted[key] = MachineLock(lock, host.spec.lock_timeout_s, frozenset([name]))
        return [wanted[key] for key in sorted(wanted)]  # one fixed order: no deadlock

    def close(self) -> None:
        for host in self._hosts.values():
            with contextlib.suppress(Exception):
                host.close()
        self._hosts.clear()
        for conn in self._conns.values():
            with contextlib.suppress(Exception):
                conn.close()
        self._conns.clear()


class SSHLauncher(HostLauncher):
    name = "ssh"
    manages_processes = True
    parallel_starts = True

    def problems(self, spec: ClusterSpec) -> list[tuple[Loc, str]]:
        return [
            (("hosts", name, "address"), "launcher: ssh needs the host's address (name or IP to dial)")
            for name, host in spec.hosts.items()
            if not host.address
        ]

    def interpreter(self, configured: str | None, local_python: str) -> str:
        return configured or "python"  # a path on that host, used verbatim (give an absolute one)

    def where(self, host: str) -> str:
        return f" on {host}"

    def hosts(self, spec: ClusterSpec, *, say: Say, local_python: str) -> SSHHosts:
        return SSHHosts(spec, say)


LAUNCHER = SSHLauncher()
