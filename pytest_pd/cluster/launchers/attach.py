"""``launcher: attach``: a cluster someone else started. pytest-pd starts, locks and stops nothing;
bring-up only checks that the workers and the router named in the file answer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pytest_pd.cluster.launchers import HostLauncher, Say
from pytest_pd.cluster.locks import MachineLock
from pytest_pd.errors import HostError

if TYPE_CHECKING:
    from pytest_pd.cluster.hosts import Host
    from pytest_pd.cluster.safe_yaml import Loc
    from pytest_pd.cluster.spec import ClusterSpec


class NoHosts:
    """An attached cluster gives pytest-pd no host to run anything on."""

    def __init__(self, spec: ClusterSpec) -> None:
        self.spec = spec

    def get(self, name: str) -> Host:
        raise HostError(
            f"cluster {self.spec.label} uses launcher: attach, which starts nothing; no host is needed."
        )

    def connect(self, names: Sequence[str]) -> None:
        for name in names:
            self.get(name)

    def addresses(self) -> dict[str, str]:
        return {}

    def machine_locks(self, names: Sequence[str], info: str) -> list[MachineLock]:
        return []

    def close(self) -> None:
        pass


class AttachLauncher(HostLauncher):
    name = "attach"
    manages_processes = False
    parallel_starts = False

    def problems(self, spec: ClusterSpec) -> list[tuple[Loc, str]]:
        return []

    def interpreter(self, configured: str | None, local_python: str) -> str:
        return configured or "python"  # as whoever starts the cluster would type it

    def where(self, host: str) -> str:
        return f" on {host}"

    def hosts(self, spec: ClusterSpec, *, say: Say, local_python: str) -> NoHosts:
        return NoHosts(spec)


LAUNCHER = AttachLauncher()
