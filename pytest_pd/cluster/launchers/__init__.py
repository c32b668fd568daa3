"""Launchers: how a cluster file's processes get onto their hosts (``launcher:`` in the file).

A launcher says whether pytest-pd starts and stops the processes at all, how the hosts of one
bring-up are made and locked, whether servers start all at once, how a host is named in messages,
and, for one that allocates its hosts (Slurm's job), what `pytest-pd commands`, `ps`, `down` and
adopting a kept run say of that. The topology and the command line ask it instead of branching on
its name. A launcher is found by name among the objects registered under the
``pytest_pd.launchers`` entry-point group (pyproject.toml), each imported only when a cluster file
names it: a new launcher is its module plus one entry-point line.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pytest_pd.cluster.hosts import Host
    from pytest_pd.cluster.locks import MachineLock
    from pytest_pd.cluster.safe_yaml import Loc
    from pytest_pd.cluster.spec import ClusterSpec

Say = Callable[[str], None]

GROUP = "pytest_pd.launchers"
_SHIPPED = ("local", "ssh", "attach", "slurm")  # listed first, in this order, in messages


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

    # ------------------------------------------------ a launcher that allocates its hosts
    def commands_comment(self, spec: ClusterSpec) -> list[str]:
        """Comment lines heading `pytest-pd commands`: how the lines below reach their hosts."""
        ...

    def adopt_problem(self, spec: ClusterSpec) -> str | None:
        """Why a run a session kept running cannot be adopted (`pytest-pd down RUN_DIR`), if so."""
        ...

    def show_allocations(self, spec: ClusterSpec, *, end_stale: bool, say: Say, show: Say) -> None:
        """`pytest-pd ps/down --cluster` of a launcher that ``allocates``: its allocations of the
        cluster and whose session holds each (``show``); ``end_stale`` ends those whose session is
        gone, saying so (``say``)."""
        ...


class HostLauncher:
    """What a launcher that does not allocate its hosts (local, SSH, attach) says of allocations:
    nothing; its runs are found through the host locks."""

    allocates = False

    def commands_comment(self, spec: ClusterSpec) -> list[str]:
        return []

    def adopt_problem(self, spec: ClusterSpec) -> str | None:
        return None

    def show_allocations(self, spec: ClusterSpec, *, end_stale: bool, say: Say, show: Say) -> None:
        raise NotImplementedError(f"launcher {spec.launcher} allocates nothing: use its host locks")


@functools.cache
def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def names() -> list[str]:
    """The registered launcher names: the shipped ones first, then the others sorted."""
    found = _entry_points()
    return [n for n in _SHIPPED if n in found] + sorted(n for n in found if n not in _SHIPPED)


@functools.cache
def launcher(name: str) -> Launcher:
    try:
        found = _entry_points()[name]
    except KeyError:
        raise ValueError(
            f"unknown launcher {name!r}; registered: {', '.join(names()) or 'none'} "
            f"(entry-point group {GROUP}; reinstall pytest-pd if it is empty)"
        ) from None
    loaded: Launcher = found.load()
    return loaded


def launcher_of(spec: ClusterSpec) -> Launcher:
    return launcher(spec.launcher)
