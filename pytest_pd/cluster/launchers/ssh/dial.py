"""Open one authenticated SSH client to a target (through its jump hosts or proxy command), every
failure turned into a HostError that says what to check."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import paramiko

from pytest_pd.cluster.launchers.ssh.config import SSHTarget, jump_target
from pytest_pd.cluster.launchers.ssh.host_keys import (
    HostKeyError,
    HostKeyPolicy,
    fingerprint,
    known_hosts_name,
)
from pytest_pd.errors import HostError

Say = Callable[[str], None]


def open_client(t: SSHTarget, say: Say) -> tuple[paramiko.SSHClient, list[paramiko.SSHClient]]:
    """A client connected to ``t``, and the clients of the jump hosts it goes through."""
    sock: object | None = None
    hops: list[paramiko.SSHClient] = []
    try:
        for spec in t.proxy_jump:
            hop = jump_target(spec, t)
            client = dial(hop, sock, say)
            hops.append(client)
            transport = client.get_transport()
            assert transport is not None
            try:
                sock = transport.open_channel(
                    "direct-tcpip", (t.hostname, t.port), ("127.0.0.1", 0), timeout=t.connect_timeout_s
                )
            except (paramiko.SSHException, OSError) as exc:
                raise HostError(
                    f"jump host {hop.where} could not open a tunnel to {t.hostname}:{t.port} for "
                    f"host {t.name}: {exc}. Check ProxyJump in {t.config_path} and that the jump "
                    "host allows TCP forwarding."
                ) from None
        if not t.proxy_jump and t.proxy_command:
            sock = paramiko.ProxyCommand(t.proxy_command)
        client = dial(t, sock, say)
    except BaseException:
        for hop_client in hops:
            hop_client.close()
        raise
    return client, hops


def dial(t: SSHTarget, sock: object | None, say: Say) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    for path in t.known_hosts:
        if Path(path).is_file():
            try:
                client.load_system_host_keys(path)  # read-only: never written back
            except (OSError, paramiko.SSHException) as exc:
                raise HostError(f"cannot read known_hosts file {path}: {exc}.") from None
    client.set_missing_host_key_policy(HostKeyPolicy(t, say))
    password = None
    if t.password_env:
        password = os.environ.get(t.password_env)
        if password is None:
            raise HostError(
                f"host {t.name}: password_env names the environment variable {t.password_env}, "
                f"which is not set. Export it before running, or use a key instead."
            )
    try:
        client.connect(
            t.hostname,
            port=t.port,
            username=t.user,
            password=password,
            key_filename=list(t.key_files) or None,  # type: ignore[arg-type]  # a list works too
            timeout=t.connect_timeout_s,
            banner_timeout=t.connect_timeout_s,
            auth_timeout=t.connect_timeout_s,
            channel_timeout=t.connect_timeout_s,
            allow_agent=True,
            look_for_keys=not t.key_files,
            sock=sock,  # type: ignore[arg-type]
        )
    except HostKeyError:
        client.close()
        raise
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise HostKeyError(
            f"host {t.name} ({t.hostname}:{t.port}) offered host key {exc.key.get_name()} "
            f"{fingerprint(exc.key)}, but known_hosts ({', '.join(t.known_hosts)}) has "
            f"{exc.expected_key.get_name()} {fingerprint(exc.expected_key)} for it: the HOST KEY "
            "CHANGED. Either the machine was reinstalled or someone is intercepting the "
            "connection. Find out which; if the change is legitimate, remove the old entry with "
            f"`ssh-keygen -R '{known_hosts_name(t.hostname, t.port)}' -f FILE` and accept the new "
            "key (connect once with ssh and compare the fingerprint)."
        ) from None
    except paramiko.AuthenticationException as exc:
        client.close()
        tried = ", ".join(t.key_files) or "the ssh agent and ~/.ssh/id_*"
        raise HostError(
            f"host {t.name}: authentication as user {t.user!r} on {t.hostname}:{t.port} failed "
            f"({exc}). Tried: {tried}{' and a password' if password else ''}. Check "
            f"hosts.{t.name}.ssh.user/key in {t.source} (or User/IdentityFile in ~/.ssh/config) "
            f"and that the public key is in ~{t.user}/.ssh/authorized_keys on the host."
        ) from None
    except TimeoutError as exc:
        client.close()
        raise HostError(
            f"host {t.name}: could not connect to {t.where} within {t.connect_timeout_s:g} s "
            f"({exc or 'timed out'}). Check the address and port in {t.source}, that the host is "
            "up and that sshd runs there; raise hosts.*.ssh.connect_timeout_s if the network is "
            "slow."
        ) from None
    except paramiko.ssh_exception.NoValidConnectionsError as exc:
        client.close()
        reasons = "; ".join(sorted({_reason(e) for e in exc.errors.values()}))
        raise HostError(
            f"host {t.name}: could not connect to {t.where}: {reasons or 'refused'} (nothing "
            f"accepts SSH connections there). Check the address and port in {t.source} and that "
            "sshd runs on the host."
        ) from None
    except (paramiko.SSHException, OSError, EOFError) as exc:
        client.close()
        raise HostError(
            f"host {t.name}: could not connect to {t.where}: {exc or type(exc).__name__}. Check "
            f"the address and port in {t.source} and that sshd runs on the host."
        ) from None
    transport = client.get_transport()
    assert transport is not None
    transport.set_keepalive(max(1, int(t.keepalive_s)))
    return client


def _reason(exc: Exception) -> str:
    code = getattr(exc, "errno", None)
    return os.strerror(code) if code else str(exc)
