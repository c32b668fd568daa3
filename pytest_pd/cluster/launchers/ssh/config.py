"""Where and how to reach an SSH host: ``hosts.NAME.ssh`` of the cluster file merged with the ssh
config (``~/.ssh/config`` or the file it names); keys the cluster file sets win."""

from __future__ import annotations

import getpass
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paramiko

from pytest_pd.cluster.spec import HostSpec
from pytest_pd.errors import HostError

DEFAULT_KNOWN_HOSTS = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2", "/etc/ssh/ssh_known_hosts")


@dataclass(frozen=True)
class SSHTarget:
    """Connection parameters of one host after merging the cluster file with ~/.ssh/config."""

    name: str  # host name in the cluster file
    hostname: str  # what is dialled
    port: int
    user: str
    key_files: tuple[str, ...] = ()
    password_env: str | None = None
    known_hosts: tuple[str, ...] = ()
    insecure: bool = False
    connect_timeout_s: float = 15.0
    keepalive_s: float = 15.0
    proxy_jump: tuple[str, ...] = ()
    proxy_command: str | None = None
    config_path: str | None = None
    source: str = "the cluster file"

    @property
    def where(self) -> str:
        return f"{self.user}@{self.hostname}:{self.port}"

    @property
    def key(self) -> tuple[str, int, str, tuple[str, ...]]:
        return (self.hostname, self.port, self.user, self.proxy_jump)


def load_config(path: str | None) -> tuple[paramiko.SSHConfig | None, str | None]:
    if path is not None and path.lower() == "none":
        return None, None
    chosen = Path(path or "~/.ssh/config").expanduser()
    if not chosen.is_file():
        if path is not None:
            raise HostError(
                f"ssh config file {chosen} (hosts.*.ssh.config) does not exist; fix the "
                "path or remove the key to use ~/.ssh/config."
            )
        return None, None
    try:
        return paramiko.SSHConfig.from_path(str(chosen)), str(chosen)
    except Exception as exc:  # paramiko raises assorted errors for bad config lines
        raise HostError(f"cannot read ssh config {chosen}: {exc}. Fix that file.") from None


def resolve_target(
    name: str, host: HostSpec, *, resolve_path: Callable[[str], str] = str, source: str = "the cluster file"
) -> SSHTarget:
    """Merge ``hosts.NAME.ssh`` with the ssh config: keys the cluster file sets win."""
    ssh = host.ssh
    given = ssh.model_fields_set
    config, config_path = load_config(
        resolve_path(ssh.config) if ssh.config and ssh.config.lower() != "none" else ssh.config
    )
    address = host.address or name  # launcher: ssh requires an address (LAUNCHER.problems)
    entry: dict[str, object] = dict(config.lookup(ssh.alias or address)) if config else {}
    hostname = str(entry.get("hostname") or ssh.alias or address)
    user = ssh.user or str(entry.get("user") or "") or getpass.getuser()
    try:
        port = ssh.port if "port" in given else int(str(entry.get("port") or ssh.port))
    except ValueError:
        raise HostError(
            f"ssh config {config_path}: Port of {ssh.alias or address} is not a number."
        ) from None
    if ssh.key:
        keys: tuple[str, ...] = (str(Path(resolve_path(ssh.key)).expanduser()),)
        if not Path(keys[0]).is_file():
            raise HostError(
                f"host {name}: key file {keys[0]} (hosts.{name}.ssh.key in {source}) "
                "does not exist; fix the path, or drop `key:` to use the ssh agent, "
                "IdentityFile from ~/.ssh/config or ~/.ssh/id_*."
            )
    else:
        keys = tuple(
            str(Path(str(k)).expanduser())
            for k in list(entry.get("identityfile") or [])  # type: ignore[call-overload]
            if Path(str(k)).expanduser().is_file()
        )
    known: tuple[str, ...]
    if ssh.known_hosts:
        known = (str(Path(resolve_path(ssh.known_hosts)).expanduser()),)
    else:
        extra = (
            str(entry.get("userknownhostsfile") or "").split()
            + str(entry.get("globalknownhostsfile") or "").split()
        )
        known = tuple(str(Path(p).expanduser()) for p in (extra or DEFAULT_KNOWN_HOSTS))
    timeout = ssh.connect_timeout_s
    if "connect_timeout_s" not in given and entry.get("connecttimeout"):
        timeout = float(str(entry["connecttimeout"]))
    keepalive = ssh.keepalive_s
    if "keepalive_s" not in given and entry.get("serveraliveinterval"):
        keepalive = float(str(entry["serveraliveinterval"]))
    jump = str(entry.get("proxyjump") or "")
    jumps = tuple(j.strip() for j in jump.split(",") if j.strip()) if jump.lower() != "none" else ()
    proxy_command = entry.get("proxycommand")
    if isinstance(proxy_command, str) and proxy_command.lower() == "none":
        proxy_command = None
    return SSHTarget(
        name=name,
        hostname=hostname,
        port=port,
        user=user,
        key_files=keys,
        password_env=ssh.password_env,
        known_hosts=known,
        insecure=ssh.insecure_accept_unknown_host_keys,
        connect_timeout_s=timeout,
        keepalive_s=keepalive,
        proxy_jump=jumps,
        proxy_command=str(proxy_command) if proxy_command else None,
        config_path=config_path,
        source=source,
    )


def jump_target(spec: str, via: SSHTarget) -> SSHTarget:
    """A ProxyJump hop ``[user@]host[:port]``, resolved through the same ssh config."""
    user, _, hostport = spec.rpartition("@")
    host, port = hostport, None
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        port = rest[1:] or None
    elif hostport.count(":") == 1:
        host, port = hostport.split(":")
    config, _ = load_config(via.config_path or "none")
    entry: dict[str, object] = dict(config.lookup(host)) if config else {}
    keys = (
        tuple(
            str(Path(str(k)).expanduser())
            for k in list(entry.get("identityfile") or [])  # type: ignore[call-overload]
            if Path(str(k)).expanduser().is_file()
        )
        or via.key_files
    )
    return SSHTarget(
        name=f"{via.name} (jump host {spec})",
        hostname=str(entry.get("hostname") or host),
        port=int(port or str(entry.get("port") or 22)),
        user=user or str(entry.get("user") or "") or via.user,
        key_files=keys,
        known_hosts=via.known_hosts,
        insecure=via.insecure,
        connect_timeout_s=via.connect_timeout_s,
        keepalive_s=via.keepalive_s,
        config_path=via.config_path,
        source=via.source,
    )
