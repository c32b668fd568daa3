"""A host of the cluster file reached over SSH: the same interface as ``LocalHost``. Processes start
with ``setsid nohup`` in their own session under a per-run remote folder
(``<workdir>/runs/<run>/``: log, pid and exit-code files)."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

from pytest_pd.cluster.hosts import CommandResult, Proc, survived_sigkill, without_colours
from pytest_pd.cluster.launchers.ssh.agent import RemoteAgent
from pytest_pd.cluster.launchers.ssh.connection import SSHConnection
from pytest_pd.cluster.launchers.ssh.scripts import STATUS, WRAPPER, env_exports, ports_in_use
from pytest_pd.cluster.spec import HostSpec
from pytest_pd.errors import HostError
from pytest_pd.redaction import redact_argv

DEFAULT_WORKDIR = "~/.cache/pytest-pd"


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
        return self.spec.address or self.name  # launcher: ssh requires an address

    def remote_run_dir(self, run_dir: Path) -> str:
        base = self.conn.expand(self.spec.workdir or DEFAULT_WORKDIR).rstrip("/")
        return f"{base}/runs/{run_dir.name}"

    # -- commands

    def run(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        timeout: float = 60.0,
    ) -> CommandResult:
        """Run argv on the host and wait; every word arrives verbatim (never shell-parsed)."""
        lines = [env_exports(env or {}, self.name), shlex.join(argv)]
        if cwd:
            lines.insert(0, f"cd {shlex.quote(self.conn.expand(cwd))} || exit 1")
        return self.conn.run_script("\n".join(filter(None, lines)), timeout=timeout, private=bool(env))

    def start_detached(self, name: str, argv: tuple[str, ...], env: dict[str, str], run_dir: Path) -> Proc:
        run_dir.mkdir(parents=True, exist_ok=True)
        remote = self._remote_paths(run_dir, name)
        rdir = remote.run_dir
        q = shlex.quote
        header = f"# {name} on {self.name} ({self.address}): {shlex.join(redact_argv(argv))}\n"
        script = "\n".join(
            [
                "set -e",
                f"mkdir -p {q(rdir)}",
                f"cd {q(rdir)}",
                f"rm -f {q(remote.pid)} {q(remote.exit)}",
                f"printf '%s' {q(header)} >> {q(remote.log)}",
                env_exports({"PYTHONUNBUFFERED": "1", **env}, self.name),
                f"setsid nohup sh -c {q(WRAPPER)} sh {q(remote.pid)} {q(remote.exit)} {shlex.join(argv)}"
                f" >> {q(remote.log)} 2>&1 < /dev/null &",
                "n=0",
                f"while [ ! -s {q(remote.pid)} ]; do n=$((n + 1)); "
                "if [ $n -gt 200 ]; then echo 'no pid file after 10 s' >&2; exit 3; fi; sleep 0.05; done",
                f"cat {q(remote.pid)}",
            ]
        )
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
        return Proc(
            name=name,
            host=self.name,
            pid=pid,
            log_path=run_dir / f"{name}.log",
            remote_log=f"{self.name}:{remote.log}",
        )

    def _stop_unrecorded(self, name: str, remote: _Remote) -> None:
        """After a start whose answer was lost: if the process's pid file appears, stop its group
        (teardown would never know of it otherwise). Best effort, over a fresh connection."""
        pid_file = shlex.quote(remote.pid)
        try:  # the start script waits up to 10 s for the pid file: so does this
            res = self.conn.run_script(
                f"n=0; while [ ! -s {pid_file} ] && [ $n -lt 120 ]; do n=$((n + 1)); sleep 0.1; done; "
                f"cat {pid_file} 2>/dev/null || true",
                timeout=40.0,
            )
            pid = int(res.stdout.strip() or 0)
            if pid > 0:
                self.kill_tree(Proc(name=name, host=self.name, pid=pid, log_path=Path(remote.log)))
        except (HostError, ValueError) as exc:
            self.conn.say(
                f"host {self.name}: could not check whether {name} started after all "
                f"({exc}); look for it there: `cat {remote.pid}`, `ps -g PID`."
            )

    def _remote_paths(self, run_dir: Path, name: str) -> _Remote:
        rdir = self.remote_run_dir(run_dir)
        return _Remote(rdir, f"{rdir}/{name}.log", f"{rdir}/{name}.pid", f"{rdir}/{name}.exit")

    def adopt(self, name: str, pid: int, run_dir: Path) -> Proc:
        """A process an earlier session started on this host (same remote run folder)."""
        remote = self._remote[name] = self._remote_paths(run_dir, name)
        return Proc(
            name=name,
            host=self.name,
            pid=pid,
            log_path=run_dir / f"{name}.log",
            remote_log=f"{self.name}:{remote.log}",
        )

    def _paths(self, proc: Proc) -> _Remote:
        try:
            return self._remote[proc.name]
        except KeyError:
            raise HostError(f"{proc.name} was not started on host {self.name}") from None

    def exit_code(self, proc: Proc) -> int | None:
        r = self._paths(proc)
        res = self.conn.run_script(STATUS.format(pid=proc.pid, exit=shlex.quote(r.exit)))
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
        raise HostError(
            f"host {self.name}: cannot tell whether {proc.name} runs: {(res.stderr or res.stdout).strip()}"
        )

    def alive(self, proc: Proc) -> bool:
        return self.exit_code(proc) is None

    def kill_tree(self, proc: Proc, grace_s: float = 10.0) -> None:
        """SIGTERM the process group, wait up to ``grace_s``, SIGKILL what is left, confirm: the
        same ``host_agent.kill_group`` as on this machine, run there by the host's Python."""
        left = RemoteAgent(self.conn, self.python).call("kill_group", pgid=int(proc.pid), grace_s=grace_s)
        if left:
            raise survived_sigkill(proc, f"host {self.name}", left, " there")

    def tail_log(self, proc: Proc, lines: int = 40) -> str:
        r = self._remote.get(proc.name)
        if r is None:
            return ""
        try:
            return without_colours(self.run(["tail", "-n", str(int(lines)), r.log], timeout=15.0).stdout)
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
                raise HostError(
                    f"could not fetch the log of {proc.name} from host {self.name} "
                    f"({r.log}): {exc}; {res.stderr.strip()}"
                ) from None
            local.write_text(res.stdout, encoding="utf-8")
        return local

    def ports_in_use(self, wanted: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
        """Which of (address, port) cannot be bound on the host right now."""
        run = lambda argv: self.run(argv, timeout=30.0)  # noqa: E731
        return ports_in_use(run, self.python, wanted, f"host {self.name}", self.name)

    def close(self) -> None:
        """Connections are shared between hosts; the topology closes them."""
