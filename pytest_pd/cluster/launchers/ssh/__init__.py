"""``launcher: ssh``, split by what each module holds: config (target resolution), host_keys,
dial (one authenticated client), connection (shared, reconnecting), scripts (what runs remotely),
host (``SSHHost``), launcher (hosts and locks of one bring-up)."""

from pytest_pd.cluster.launchers.ssh.config import SSHTarget, resolve_target
from pytest_pd.cluster.launchers.ssh.connection import SSHConnection
from pytest_pd.cluster.launchers.ssh.host import SSHHost
from pytest_pd.cluster.launchers.ssh.host_keys import HostKeyError, fingerprint
from pytest_pd.cluster.launchers.ssh.launcher import LAUNCHER, SSHHosts

__all__ = [
    "LAUNCHER",
    "HostKeyError",
    "SSHConnection",
    "SSHHost",
    "SSHHosts",
    "SSHTarget",
    "fingerprint",
    "resolve_target",
]
