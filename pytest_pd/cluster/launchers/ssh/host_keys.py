"""Host keys: checked against known_hosts (read only, never written back); an unknown key is an error
that shows its fingerprint and how to accept it, unless the cluster file opts in to accepting it."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

import paramiko

from pytest_pd.cluster.launchers.ssh.config import SSHTarget
from pytest_pd.errors import HostError

Say = Callable[[str], None]


class HostKeyError(HostError):
    """A host key that is unknown or differs from known_hosts."""


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint of a public key (what ``ssh-keygen -lf`` prints)."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def known_hosts_name(hostname: str, port: int) -> str:
    return hostname if port == 22 else f"[{hostname}]:{port}"


class HostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Unknown key: a clear error with the fingerprint and how to accept it, or (opt-in) a
    warning and acceptance for this connection only (nothing is written to known_hosts)."""

    def __init__(self, target: SSHTarget, say: Say) -> None:
        self.target = target
        self.say = say

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        t = self.target
        line = f"{known_hosts_name(t.hostname, t.port)} {key.get_name()} {key.get_base64()}"
        if t.insecure:
            self.say(
                f"WARNING: host {t.name} ({t.hostname}:{t.port}) offered an unknown host key "
                f"{key.get_name()} {fingerprint(key)}; accepted without verification because "
                "the cluster file sets insecure_accept_unknown_host_keys: true"
            )
            return
        files = ", ".join(t.known_hosts) or "(none)"
        target_file = t.known_hosts[0] if t.known_hosts else "~/.ssh/known_hosts"
        raise HostKeyError(
            f"host {t.name} ({t.hostname}:{t.port}) offered host key {key.get_name()} "
            f"{fingerprint(key)}, which is not in known_hosts ({files}). Compare that fingerprint "
            f"with the one on the machine (`ssh-keygen -lf /etc/ssh/ssh_host_{_short(key)}_key.pub` "
            f"there); if it matches, accept it by appending this line to {target_file}:\n"
            f"  {line}\n"
            f"(or run `ssh -p {t.port} {t.user}@{t.hostname}` once and answer yes). To skip the "
            f"check on a network you trust, set insecure_accept_unknown_host_keys: true under "
            f"hosts.{t.name}.ssh in {t.source}."
        )


def _short(key: paramiko.PKey) -> str:
    name = key.get_name()
    for short in ("ed25519", "ecdsa", "rsa", "dss"):
        if short in name:
            return short
    return name
