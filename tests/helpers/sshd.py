"""Real OpenSSH servers for the SSH tests: one ``sshd`` per "host" on its own loopback address
(127.0.0.2, 127.0.0.3, …), each with a generated host key, all trusting one generated client key.

Nothing here touches ~/.ssh: the tests point the cluster file (``ssh.key``, ``ssh.known_hosts``,
``ssh.config: none``) at the files made here.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers import REPO, free_port

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"
INSTALL_HINT = "install it with `apt-get install -y openssh-server` (.ci/run does this)"


class SshdUnavailable(Exception):
    """sshd cannot be had here; the tests that need it skip with this reason."""


def keygen(path: Path, comment: str) -> str:
    """A fresh ed25519 key pair; returns the public key line."""
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path.with_suffix(".pub").read_text().strip()


def remote_python() -> str:
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


@dataclass
class SshdHost:
    address: str
    port: int
    folder: Path
    host_pub: str  # "ssh-ed25519 AAAA… comment"
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def known_hosts_line(self) -> str:
        kind, b64 = self.host_pub.split()[:2]
        return f"[{self.address}]:{self.port} {kind} {b64}"

    @property
    def log(self) -> Path:
        return self.folder / "sshd.log"

    def session_pids(self) -> list[int]:
        """The per-connection sshd processes (children of the listener)."""
        assert self.proc is not None
        out = []
        for p in Path("/proc").iterdir():
            if not p.name.isdigit():
                continue
            try:
                ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == self.proc.pid:
                out.append(int(p.name))
        return out

    def drop_connections(self) -> int:
        """Kill every connection to this sshd, as a network failure would; returns how many."""
        pids = self.session_pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(pids)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_sshd(folder: Path, address: str, authorized_keys: Path) -> SshdHost:
    folder.mkdir(parents=True, exist_ok=True)
    host_pub = keygen(folder / "host_key", f"host-{address}")
    last_error = ""
    for _ in range(3):  # a free port can be taken between choosing and binding it
        port = free_port()
        config = folder / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"ListenAddress {address}",
                    f"Port {port}",
                    f"HostKey {folder / 'host_key'}",
                    f"AuthorizedKeysFile {authorized_keys}",
                    f"PidFile {folder / 'sshd.pid'}",
                    "StrictModes no",
                    "UsePAM no",
                    "PermitRootLogin yes",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "AllowTcpForwarding yes",
                    "MaxSessions 30",
                    "MaxStartups 50",
                    "UseDNS no",
                    "PrintMotd no",
                    "Subsystem sftp internal-sftp",
                    "LogLevel VERBOSE",
                    "",
                ]
            )
        )
        host = SshdHost(address, port, folder, host_pub)
        host.proc = subprocess.Popen(
            [SSHD, "-D", "-f", str(config), "-E", str(host.log)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and host.proc.poll() is None:
            try:
                with socket.create_connection((address, port), timeout=1) as s:
                    s.settimeout(2)
                    if s.recv(64).startswith(b"SSH-"):
                        return host
            except OSError:
                time.sleep(0.05)
        last_error = host.log.read_text() if host.log.exists() else "(no log)"
        host.stop()
    raise SshdUnavailable(f"sshd on {address} did not start: {last_error.strip()[-500:]}")


@dataclass
class SshFarm:
    """Several sshd "hosts" on this machine and the client-side files to reach them."""

    folder: Path
    hosts: list[SshdHost]
    client_key: Path  # authorized on every host
    stranger_key: Path  # authorized nowhere
    known_hosts: Path  # every host's key
    user: str

    def ssh_block(self, host: SshdHost, **overrides: object) -> dict[str, object]:
        block: dict[str, object] = {
            "user": self.user,
            "port": host.port,
            "key": str(self.client_key),
            "known_hosts": str(self.known_hosts),
            "config": "none",
            "connect_timeout_s": 5,
        }
        block.update(overrides)
        return block

    def host_block(
        self, host: SshdHost, workdir: Path, lock_dir: Path, **ssh_overrides: object
    ) -> dict[str, object]:
        """A ``hosts.NAME`` entry of a cluster file for this sshd host."""
        return {
            "address": host.address,
            "gpus": 8,
            "python": remote_python(),
            "workdir": str(workdir),
            "lock_dir": str(lock_dir),
            "ssh": self.ssh_block(host, **ssh_overrides),
        }

    def stop(self) -> None:
        for host in self.hosts:
            host.stop()


def start_farm(folder: Path, addresses: tuple[str, ...] = ("127.0.0.2", "127.0.0.3")) -> SshFarm:
    if not Path(SSHD).exists():
        raise SshdUnavailable(f"OpenSSH's sshd is not installed ({SSHD} missing); {INSTALL_HINT}")
    if not Path(SSH_KEYGEN).exists():
        raise SshdUnavailable(f"ssh-keygen is not installed; {INSTALL_HINT}")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege separation folder
    folder.mkdir(parents=True, exist_ok=True)
    client_pub = keygen(folder / "client_key", "pytest-pd-client")
    keygen(folder / "stranger_key", "pytest-pd-stranger")
    authorized = folder / "authorized_keys"
    authorized.write_text(client_pub + "\n")
    hosts: list[SshdHost] = []
    try:
        for i, address in enumerate(addresses):
            hosts.append(start_sshd(folder / f"host{i}", address, authorized))
    except BaseException:
        for host in hosts:
            host.stop()
        raise
    known = folder / "known_hosts"
    known.write_text("".join(h.known_hosts_line + "\n" for h in hosts))
    return SshFarm(folder, hosts, folder / "client_key", folder / "stranger_key", known, getpass.getuser())


def ssh_cluster_copy(
    name: str,
    dest: Path,
    farm: SshFarm,
    work: Path,
    *,
    prefill_host: int = 0,
    decode_host: int = 1,
    host_overrides: dict[str, object] | None = None,
    **overrides: object,
) -> Path:
    """A shipped sim cluster turned into ``launcher: ssh``: prefill and router on one sshd host,
    decode on another, fresh ports, remote run folders and locks under ``work``."""
    import yaml

    from tests.helpers import sim_cluster_copy

    path = sim_cluster_copy(name, dest, **overrides)
    data = yaml.safe_load(path.read_text())
    data["launcher"] = "ssh"
    p, d = farm.hosts[prefill_host], farm.hosts[decode_host]
    data["hosts"] = {
        "prefill-node": {**farm.host_block(p, work / "remote", work / "locks"), **(host_overrides or {})},
        "decode-node": {**farm.host_block(d, work / "remote", work / "locks"), **(host_overrides or {})},
    }
    data["router"]["prometheus_host"] = p.address
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
