"""Hosts reached over SSH (paramiko): the same interface as ``LocalHost``.

One ``SSHConnection`` per machine and bring-up, reused by every command, kept alive, reconnected
once when it drops. Host keys are checked against known_hosts; an unknown key is an error unless the
cluster file opts in with ``insecure_accept_unknown_host_keys: true``. Every remote command is built
from argv with ``shlex.quote`` and run by ``sh -c`` whatever the login shell is, so values from the
cluster file arrive verbatim and are never executed. Processes start with ``setsid nohup`` in their
own session under a per-run remote folder (``<workdir>/runs/<run>/``: log, pid and exit-code files).
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import os
import re
import select
import shlex
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

from pytest_pd.cluster.hosts import CommandResult, Proc, without_colours
from pytest_pd.cluster.spec import HostSpec
from pytest_pd.errors import HostError
from pytest_pd.redaction import redact_argv

Say = Callable[[str], None]

DEFAULT_WORKDIR = "~/.cache/pytest-pd"
DEFAULT_KNOWN_HOSTS = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2", "/etc/ssh/ssh_known_hosts")
MAX_CHANNELS = 8  # below OpenSSH's default MaxSessions (10): the host lock holds one more
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class HostKeyError(HostError):
    """A host key that is unknown or differs from known_hosts."""


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint of a public key (what ``ssh-keygen -lf`` prints)."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def known_hosts_name(hostname: str, port: int) -> str:
    return hostname if port == 22 else f"[{hostname}]:{port}"


# --------------------------------------------------------------------------- where and how


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


def _load_config(path: str | None) -> tuple[paramiko.SSHConfig | None, str | None]:
    if path is not None and path.lower() == "none":
        return None, None
    chosen = Path(path or "~/.ssh/config").expanduser()
    if not chosen.is_file():
        if path is not None:
            raise HostError(f"ssh config file {chosen} (hosts.*.ssh.config) does not exist; fix the "
                            "path or remove the key to use ~/.ssh/config.")
        return None, None
    try:
        return paramiko.SSHConfig.from_path(str(chosen)), str(chosen)
    except Exception as exc:  # paramiko raises assorted errors for bad config lines
        raise HostError(f"cannot read ssh config {chosen}: {exc}. Fix that file.") from None


def resolve_target(name: str, host: HostSpec, *, resolve_path: Callable[[str], str] = str,
                   source: str = "the cluster file") -> SSHTarget:
    """Merge ``hosts.NAME.ssh`` with the ssh config: keys the cluster file sets win."""
    ssh = host.ssh
    given = ssh.model_fields_set
    config, config_path = _load_config(resolve_path(ssh.config) if ssh.config
                                       and ssh.config.lower() != "none" else ssh.config)
    entry: dict[str, object] = dict(config.lookup(ssh.alias or host.address)) if config else {}
    hostname = str(entry.get("hostname") or ssh.alias or host.address)
    user = ssh.user or str(entry.get("user") or "") or getpass.getuser()
    try:
        port = ssh.port if "port" in given else int(str(entry.get("port") or ssh.port))
    except ValueError:
        raise HostError(f"ssh config {config_path}: Port of {ssh.alias or host.address} is not a "
                        "number.") from None
    if ssh.key:
        keys: tuple[str, ...] = (str(Path(resolve_path(ssh.key)).expanduser()),)
        if not Path(keys[0]).is_file():
            raise HostError(f"host {name}: key file {keys[0]} (hosts.{name}.ssh.key in {source}) "
                            "does not exist; fix the path, or drop `key:` to use the ssh agent, "
                            "IdentityFile from ~/.ssh/config or ~/.ssh/id_*.")
    else:
        keys = tuple(str(Path(str(k)).expanduser()) for k in list(entry.get("identityfile") or [])  # type: ignore[call-overload]
                     if Path(str(k)).expanduser().is_file())
    if ssh.known_hosts:
        known = (str(Path(resolve_path(ssh.known_hosts)).expanduser()),)
    else:
        extra = str(entry.get("userknownhostsfile") or "").split() + \
            str(entry.get("globalknownhostsfile") or "").split()
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
        name=name, hostname=hostname, port=port, user=user, key_files=keys,
        password_env=ssh.password_env, known_hosts=known,
        insecure=ssh.insecure_accept_unknown_host_keys, connect_timeout_s=timeout,
        keepalive_s=keepalive, proxy_jump=jumps,
        proxy_command=str(proxy_command) if proxy_command else None,
        config_path=config_path, source=source,
    )


def _jump_target(spec: str, via: SSHTarget) -> SSHTarget:
    """A ProxyJump hop ``[user@]host[:port]``, resolved through the same ssh config."""
    user, _, hostport = spec.rpartition("@")
    host, port = hostport, None
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        port = rest[1:] or None
    elif hostport.count(":") == 1:
        host, port = hostport.split(":")
    config, _ = _load_config(via.config_path or "none")
    entry: dict[str, object] = dict(config.lookup(host)) if config else {}
    keys = tuple(str(Path(str(k)).expanduser()) for k in list(entry.get("identityfile") or [])  # type: ignore[call-overload]
                 if Path(str(k)).expanduser().is_file()) or via.key_files
    return SSHTarget(
        name=f"{via.name} (jump host {spec})", hostname=str(entry.get("hostname") or host),
        port=int(port or str(entry.get("port") or 22)),
        user=user or str(entry.get("user") or "") or via.user, key_files=keys,
        known_hosts=via.known_hosts, insecure=via.insecure,
        connect_timeout_s=via.connect_timeout_s, keepalive_s=via.keepalive_s,
        config_path=via.config_path, source=via.source,
    )


# --------------------------------------------------------------------------- host keys


class _HostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Unknown key: a clear error with the fingerprint and how to accept it, or (opt-in) a
    warning and acceptance for this connection only (nothing is written to known_hosts)."""

    def __init__(self, target: SSHTarget, say: Say) -> None:
        self.target = target
        self.say = say

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        t = self.target
        line = f"{known_hosts_name(t.hostname, t.port)} {key.get_name()} {key.get_base64()}"
        if t.insecure:
            self.say(f"WARNING: host {t.name} ({t.hostname}:{t.port}) offered an unknown host key "
                     f"{key.get_name()} {fingerprint(key)}; accepted without verification because "
                     "the cluster file sets insecure_accept_unknown_host_keys: true")
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


# --------------------------------------------------------------------------- connection


class _Dropped(Exception):
    """The transport died under a command (the caller may reconnect once)."""


class SSHConnection:
    """One SSH connection to a machine, shared by every host name that points at it."""

    def __init__(self, target: SSHTarget, say: Say = print) -> None:
        self.target = target
        self.say = say
        self.reconnects = 0
        self._client: paramiko.SSHClient | None = None
        self._hops: list[paramiko.SSHClient] = []
        self._lock = threading.RLock()
        self._channels = threading.BoundedSemaphore(MAX_CHANNELS)
        self._home: str | None = None
        self._on_reconnect: list[Callable[[], None]] = []
        self._closed = False

    # -- connecting

    def connect(self) -> None:
        with self._lock:
            if self._closed:
                raise HostError(f"connection to host {self.target.name} was closed")
            if self._client is None:
                self._open()
            elif not self._active():
                self._reconnect("the transport is no longer active")

    def _active(self) -> bool:
        transport = self._client.get_transport() if self._client else None
        return bool(transport and transport.is_active())

    def _open(self) -> None:
        self._drop()
        t = self.target
        sock: object | None = None
        hops: list[paramiko.SSHClient] = []
        try:
            for spec in t.proxy_jump:
                hop = _jump_target(spec, t)
                client = self._dial(hop, sock)
                hops.append(client)
                transport = client.get_transport()
                assert transport is not None
                try:
                    sock = transport.open_channel("direct-tcpip", (t.hostname, t.port), ("127.0.0.1", 0),
                                                  timeout=t.connect_timeout_s)
                except (paramiko.SSHException, OSError) as exc:
                    raise HostError(
                        f"jump host {hop.where} could not open a tunnel to {t.hostname}:{t.port} for "
                        f"host {t.name}: {exc}. Check ProxyJump in {t.config_path} and that the jump "
                        "host allows TCP forwarding."
                    ) from None
            if not t.proxy_jump and t.proxy_command:
                sock = paramiko.ProxyCommand(t.proxy_command)
            self._client = self._dial(t, sock)
        except BaseException:
            for client in hops:
                client.close()
            raise
        self._hops = hops

    def _dial(self, t: SSHTarget, sock: object | None) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        for path in t.known_hosts:
            if Path(path).is_file():
                try:
                    client.load_system_host_keys(path)  # read-only: never written back
                except (OSError, paramiko.SSHException) as exc:
                    raise HostError(f"cannot read known_hosts file {path}: {exc}.") from None
        client.set_missing_host_key_policy(_HostKeyPolicy(t, self.say))
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
                t.hostname, port=t.port, username=t.user, password=password,
                key_filename=list(t.key_files) or None, timeout=t.connect_timeout_s,
                banner_timeout=t.connect_timeout_s, auth_timeout=t.connect_timeout_s,
                channel_timeout=t.connect_timeout_s, allow_agent=True,
                look_for_keys=not t.key_files, sock=sock,  # type: ignore[arg-type]
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
            reasons = "; ".join(sorted({os.strerror(e.errno) if e.errno else str(e)
                                        for e in exc.errors.values()}))
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

    def _drop(self) -> None:
        for client in [self._client, *reversed(self._hops)]:
            if client is not None:
                try:
                    client.close()
                except Exception:  # noqa: BLE001 (closing a dead connection)
                    pass
        self._client, self._hops = None, []

    def _reconnect(self, why: str) -> None:
        with self._lock:
            if self._active():
                return  # another thread already reconnected
            self.say(f"host {self.target.name}: connection lost ({why}); reconnecting once")
            self.reconnects += 1
            try:
                self._open()
            except HostError as exc:
                raise HostError(f"host {self.target.name}: the SSH connection dropped ({why}) and "
                                f"reconnecting failed: {exc}") from None
        for hook in list(self._on_reconnect):
            hook()

    def on_reconnect(self, hook: Callable[[], None]) -> None:
        self._on_reconnect.append(hook)

    def drop_for_test(self) -> None:
        """Close the transport under the connection's feet, as a network failure would."""
        transport = self._client.get_transport() if self._client else None
        if transport is not None:
            transport.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._drop()

    # -- channels

    def open_session(self) -> paramiko.Channel:
        """A new session channel, reconnecting once when the connection has dropped."""
        self.connect()
        for attempt in (0, 1):
            with self._lock:
                client = self._client
            transport = client.get_transport() if client else None
            try:
                if transport is None or not transport.is_active():
                    raise _Dropped("transport not active")
                return transport.open_session(timeout=self.target.connect_timeout_s)
            except (_Dropped, paramiko.SSHException, EOFError, OSError) as exc:
                if attempt or (transport is not None and transport.is_active()):
                    raise HostError(f"host {self.target.name}: cannot open an SSH channel: {exc}") \
                        from None
                self._reconnect(str(exc) or type(exc).__name__)
        raise AssertionError("unreachable")

    def run_script(self, script: str, *, timeout: float = 60.0, retry: bool = True,
                   stdin: bytes | None = None, private: bool = False) -> CommandResult:
        """Run a POSIX sh script (already quoted) and collect its output. With ``retry``, a
        connection that drops mid-command is reconnected once and the command run again. A
        ``private`` script (one holding env values) goes on stdin, so its text never shows in
        the host's process list."""
        command = "sh -c " + shlex.quote(script)
        if private:
            assert stdin is None, "a private script takes stdin itself"
            command, stdin = "sh -s", script.encode()
        with self._channels:
            for attempt in (0, 1):
                chan = self.open_session()
                try:
                    return self._collect(chan, command, timeout, stdin)
                except _Dropped as exc:
                    if attempt or not retry:
                        raise HostError(f"host {self.target.name}: the SSH connection dropped "
                                        f"while running a command ({exc}).") from None
                    self._reconnect(str(exc))
                finally:
                    chan.close()
        raise AssertionError("unreachable")

    def _collect(self, chan: paramiko.Channel, command: str, timeout: float,
                 stdin: bytes | None) -> CommandResult:
        try:
            chan.exec_command(command)
            if stdin:
                chan.sendall(stdin)
            chan.shutdown_write()
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise _Dropped(str(exc) or type(exc).__name__) from None
        out, err = bytearray(), bytearray()
        deadline = time.monotonic() + timeout
        transport = chan.get_transport()
        while True:
            while chan.recv_ready():
                out += chan.recv(65536)
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(65536)
            if chan.exit_status_ready() and chan.eof_received:
                while chan.recv_ready():
                    out += chan.recv(65536)
                while chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                break
            if chan.closed or transport is None or not transport.is_active():
                if chan.exit_status_ready():
                    break
                raise _Dropped("connection closed")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise HostError(f"host {self.target.name}: a remote command did not finish within "
                                f"{timeout:g} s: {command[:200]}")
            select.select([chan], [], [], min(remaining, 0.5))
        return CommandResult(chan.recv_exit_status(), out.decode(errors="replace"),
                             err.decode(errors="replace"))

    def home(self) -> str:
        if self._home is None:
            res = self.run_script('printf %s "$HOME"')
            if res.returncode != 0 or not res.stdout.startswith("/"):
                raise HostError(f"host {self.target.name}: cannot find the remote home folder "
                                f"({res.stderr.strip() or res.stdout.strip()!r}).")
            self._home = res.stdout
        return self._home

    def expand(self, path: str) -> str:
        """A remote path with a leading ``~`` replaced by the remote home folder."""
        if path == "~":
            return self.home()
        if path.startswith("~/"):
            return self.home().rstrip("/") + path[1:]
        return path

    def get_file(self, remote: str, local: Path) -> None:
        with self._channels:
            self.connect()
            assert self._client is not None
            sftp = self._client.open_sftp()
            sftp.get_channel().settimeout(60.0)  # a dead peer must not stall teardown for minutes
            try:
                sftp.get(remote, str(local))
            finally:
                sftp.close()


# --------------------------------------------------------------------------- the host


_WRAPPER = 'p=$1; e=$2; shift 2; echo $$ > "$p"; "$@"; echo $? > "$e"'

_STATUS = """
pid={pid}; ef={exit}
if [ -s "$ef" ]; then echo "exit $(cat "$ef")"; exit 0; fi
st=$(ps -o stat= -p "$pid" 2>/dev/null || true)
case "$st" in
  ""|Z*) if [ -s "$ef" ]; then echo "exit $(cat "$ef")"; else echo gone; fi ;;
  *) echo running ;;
esac
"""

_KILL = """
pg={pgid}
alive() {{ ps -e -o pgid=,stat= | awk -v g="$pg" '$1 == g && $2 !~ /^Z/ {{f = 1}} END {{exit !f}}'; }}
if ! alive; then echo gone; exit 0; fi
kill -s TERM -- "-$pg" 2>/dev/null
n=0; while alive && [ $n -lt {grace_ticks} ]; do sleep 0.1; n=$((n + 1)); done
if alive; then
  kill -s KILL -- "-$pg" 2>/dev/null
  n=0; while alive && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
fi
if alive; then echo alive; ps -e -o pgid=,pid=,stat=,args= | awk -v g="$pg" '$1 == g'; else echo gone; fi
"""

_PORTS = """
import socket, sys
for item in sys.argv[1:]:
    addr, port = item.rsplit(":", 1)
    sock = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((addr, int(port)))
    except OSError:
        print(item)
    finally:
        sock.close()
"""


@dataclass
class _Remote:
    run_dir: str
    log: str
    pid: str
    exit: str


@dataclass
class SSHHost:
    """A host of the cluster file reached over SSH; several may share one connection."""

    name: str
    spec: HostSpec
    conn: SSHConnection
    python: str = "python"
    _remote: dict[str, _Remote] = field(default_factory=dict, repr=False)

    @property
    def address(self) -> str:
        return self.spec.address

    def remote_run_dir(self, run_dir: Path) -> str:
        base = self.conn.expand(self.spec.workdir or DEFAULT_WORKDIR).rstrip("/")
        return f"{base}/runs/{run_dir.name}"

    # -- commands

    def run(self, argv: Sequence[str], *, env: dict[str, str] | None = None,
            cwd: str | None = None, timeout: float = 60.0) -> CommandResult:
        """Run argv on the host and wait; every word arrives verbatim (never shell-parsed)."""
        lines = [_env_exports(env or {}, self.name), shlex.join(argv)]
        if cwd:
            lines.insert(0, f"cd {shlex.quote(self.conn.expand(cwd))} || exit 1")
        return self.conn.run_script("\n".join(filter(None, lines)), timeout=timeout,
                                    private=bool(env))

    def start_detached(self, name: str, argv: tuple[str, ...], env: dict[str, str],
                       run_dir: Path) -> Proc:
        run_dir.mkdir(parents=True, exist_ok=True)
        remote = self._remote_paths(run_dir, name)
        rdir = remote.run_dir
        q = shlex.quote
        header = f"# {name} on {self.name} ({self.address}): {shlex.join(redact_argv(argv))}\n"
        script = "\n".join([
            "set -e",
            f"mkdir -p {q(rdir)}",
            f"cd {q(rdir)}",
            f"rm -f {q(remote.pid)} {q(remote.exit)}",
            f"printf '%s' {q(header)} >> {q(remote.log)}",
            _env_exports({"PYTHONUNBUFFERED": "1", **env}, self.name),
            f"setsid nohup sh -c {q(_WRAPPER)} sh {q(remote.pid)} {q(remote.exit)} {shlex.join(argv)}"
            f" >> {q(remote.log)} 2>&1 < /dev/null &",
            "n=0",
            f"while [ ! -s {q(remote.pid)} ]; do n=$((n + 1)); "
            "if [ $n -gt 200 ]; then echo 'no pid file after 10 s' >&2; exit 3; fi; sleep 0.05; done",
            f"cat {q(remote.pid)}",
        ])
        try:
            res = self.conn.run_script(script, timeout=30.0, retry=False, private=True)
        except HostError:  # the connection dropped: the process may have started all the same
            self._stop_unrecorded(name, remote)
            raise
        try:
            pid = int(res.stdout.strip())
        except ValueError:
            pid = 0
        if res.returncode != 0 or pid <= 0:
            raise HostError(
                f"could not start {name} on host {self.name} ({self.conn.target.where}): "
                f"{(res.stderr or res.stdout).strip() or f'exit code {res.returncode}'}. Check that "
                f"the workdir ({self.spec.workdir or DEFAULT_WORKDIR}) is writable there and that "
                "setsid and nohup exist."
            )
        self._remote[name] = remote
        (run_dir / f"{name}.pid").write_text(f"{pid}\n")  # local copy, for reports and leak checks
        return Proc(name=name, host=self.name, pid=pid, log_path=run_dir / f"{name}.log",
                    remote_log=f"{self.name}:{remote.log}")

    def _stop_unrecorded(self, name: str, remote: _Remote) -> None:
        """After a start whose answer was lost: if the process's pid file appears, stop its group
        (teardown would never know of it otherwise). Best effort, over a fresh connection."""
        pid_file = shlex.quote(remote.pid)
        try:  # the start script waits up to 10 s for the pid file: so does this
            res = self.conn.run_script(
                f"n=0; while [ ! -s {pid_file} ] && [ $n -lt 120 ]; do n=$((n + 1)); sleep 0.1; done; "
                f"cat {pid_file} 2>/dev/null || true", timeout=40.0)
            pid = int(res.stdout.strip() or 0)
            if pid > 0:
                self.kill_tree(Proc(name=name, host=self.name, pid=pid, log_path=Path(remote.log)))
        except (HostError, ValueError) as exc:
            self.conn.say(f"host {self.name}: could not check whether {name} started after all "
                          f"({exc}); look for it there: `cat {remote.pid}`, `ps -g PID`.")

    def _remote_paths(self, run_dir: Path, name: str) -> _Remote:
        rdir = self.remote_run_dir(run_dir)
        return _Remote(rdir, f"{rdir}/{name}.log", f"{rdir}/{name}.pid", f"{rdir}/{name}.exit")

    def adopt(self, name: str, pid: int, run_dir: Path) -> Proc:
        """A process an earlier session started on this host (same remote run folder)."""
        remote = self._remote[name] = self._remote_paths(run_dir, name)
        return Proc(name=name, host=self.name, pid=pid, log_path=run_dir / f"{name}.log",
                    remote_log=f"{self.name}:{remote.log}")

    def _paths(self, proc: Proc) -> _Remote:
        try:
            return self._remote[proc.name]
        except KeyError:
            raise HostError(f"{proc.name} was not started on host {self.name}") from None

    def exit_code(self, proc: Proc) -> int | None:
        r = self._paths(proc)
        res = self.conn.run_script(_STATUS.format(pid=proc.pid, exit=shlex.quote(r.exit)))
        word, _, rest = res.stdout.strip().partition(" ")
        if word == "running":
            return None
        if word == "exit":
            try:
                return int(rest)
            except ValueError:
                return -1
        if word == "gone":
            return -1  # gone without an exit code: killed by a signal
        raise HostError(f"host {self.name}: cannot tell whether {proc.name} runs: "
                        f"{(res.stderr or res.stdout).strip()}")

    def alive(self, proc: Proc) -> bool:
        return self.exit_code(proc) is None

    def kill_tree(self, proc: Proc, grace_s: float = 10.0) -> None:
        """SIGTERM the process group, wait up to ``grace_s``, SIGKILL what is left, confirm."""
        script = _KILL.format(pgid=int(proc.pid), grace_ticks=max(1, int(grace_s * 10)))
        res = self.conn.run_script(script, timeout=grace_s + 30.0)
        if res.stdout.strip().splitlines()[:1] != ["gone"]:
            raise HostError(
                f"process group {proc.pid} of {proc.name} on host {self.name} survived SIGKILL "
                f"({res.stdout.strip() or res.stderr.strip()}); inspect it there with "
                f"`ps -o pid,stat,cmd -g {proc.pid}` and kill it by hand."
            )

    def tail_log(self, proc: Proc, lines: int = 40) -> str:
        r = self._remote.get(proc.name)
        if r is None:
            return ""
        try:
            return without_colours(self.run(["tail", "-n", str(int(lines)), r.log],
                                            timeout=15.0).stdout)
        except HostError as exc:
            return f"(cannot read the remote log {r.log}: {exc})\n"

    def fetch_log(self, proc: Proc, dest_dir: Path) -> Path:
        """Copy the remote log into the local run directory (for the report)."""
        r = self._paths(proc)
        dest_dir.mkdir(parents=True, exist_ok=True)
        local = dest_dir / f"{proc.name}.log"
        try:
            self.conn.get_file(r.log, local)
        except (OSError, paramiko.SSHException, EOFError) as exc:
            res = self.run(["cat", r.log], timeout=60.0)  # hosts without the sftp subsystem
            if res.returncode != 0:
                raise HostError(f"could not fetch the log of {proc.name} from host {self.name} "
                                f"({r.log}): {exc}; {res.stderr.strip()}") from None
            local.write_text(res.stdout, encoding="utf-8")
        return local

    def ports_in_use(self, wanted: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
        """Which of (address, port) cannot be bound on the host right now."""
        if not wanted:
            return []
        items = [f"{addr}:{port}" for addr, port in wanted]
        res = self.run([self.python, "-c", _PORTS, *items], timeout=30.0)
        if res.returncode != 0:
            raise HostError(
                f"host {self.name}: cannot run {self.python!r} to check ports "
                f"({(res.stderr or res.stdout).strip()[-300:]}). Set hosts.{self.name}.python in the "
                "cluster file to the interpreter that runs the servers there."
            )
        busy = set(res.stdout.split())
        return [(addr, port) for (addr, port), item in zip(wanted, items, strict=True) if item in busy]

    def close(self) -> None:
        """Connections are shared between hosts; the topology closes them."""


def _env_exports(env: dict[str, str], host: str) -> str:
    """``export K=V`` lines for the start script of one process (its own shell): values
    verbatim, never on a command line."""
    bad = [k for k in env if not _ENV_NAME.match(k)]
    if bad:
        raise HostError(f"host {host}: {', '.join(map(repr, bad))} cannot be environment variable "
                        "names (letters, digits and _ only); fix the env block of the cluster file.")
    return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in env.items())
