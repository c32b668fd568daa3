"""Launchers: how a cluster file's processes get onto their hosts (``launcher:`` in the file).

A launcher says whether pytest-pd starts and stops the processes at all, how the hosts of one
bring-up are made and locked, whether servers start all at once, and how a host is named in
messages. The topology asks it instead of branching on the launcher's name; a new launcher
is one module here plus one line in ``_MODULES``, each imported only when a
cluster file names it.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pytest_pd.cluster.hosts import Host
    from pytest_pd.cluster.locks import MachineLock
    from pytest_pd.cluster.safe_yaml import Loc
    from pytest_pd.cluster.spec import ClusterSpec

Say = Callable[[str], None]

# name -> module defining LAUNCHER; the order is the one error messages list them in
_MODULES = {
    "local": "pytest_pd.cluster.launchers.local",
    "ssh": "pytest_pd.cluster.launchers.ssh",
    "attach": "pytest_pd.cluster.launchers.attach",
    "slurm": "pytest_pd.cluster.launchers.slurm",
}


class Hosts(Protocol):
    """The hosts of one bring-up, made by its launcher; connections are shared and closed together.
    After ``close`` the set may be used again (it opens new connections)."""

    def get(self, name: str) -> Host: ...

    def connect(self, names: Sequence[str]) -> None:
        """Reach every host at once: what cannot be reached fails here, before anything starts."""
        ...

    def addresses(self) -> dict[str, str]:
        """Each host's address where the launcher chose it on ``connect`` (Slurm's nodes); empty
        where the cluster file gives them."""
        ...

    def machine_locks(self, names: Sequence[str], info: str) -> list[MachineLock]:
        """The lock of each machine the named hosts are on (not taken yet)."""
        ...

    def close(self) -> None: ...


class Launcher(Protocol):
    name: str
    manages_processes: bool  # False: someone else runs the cluster; only its health is checked
    parallel_starts: bool  # servers start all at once (each start is a round trip) or in turn
    # the hosts are an allocation made at bring-up and ended at teardown (Slurm's job): no host
    # locks or run ledgers, and nothing can be left running for a later `pytest-pd down`
    allocates: bool

    def problems(self, spec: ClusterSpec) -> list[tuple[Loc, str]]:
        """What the cluster file must satisfy for this launcher, as (field, what is wrong)."""
        ...

    def interpreter(self, configured: str | None, local_python: str) -> str:
        """The Python that runs a host's processes, from the host's ``python:`` key."""
        ...

    def where(self, host: str) -> str:
        """How messages place something on ``host``, after its address (" on NAME", or "")."""
        ...

    def hosts(self, spec: ClusterSpec, *, say: Say, local_python: str) -> Hosts: ...


def names() -> list[str]:
    return list(_MODULES)


@functools.cache
def launcher(name: str) -> Launcher:
    try:
        module = _MODULES[name]
    except KeyError:
        raise ValueError(f"unknown launcher {name!r}; known: {', '.join(_MODULES)}") from None
    found: Launcher = importlib.import_module(module).LAUNCHER
    return found


def launcher_of(spec: ClusterSpec) -> Launcher:
    return launcher(spec.launcher)
