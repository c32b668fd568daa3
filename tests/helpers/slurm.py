"""A real Slurm (Debian's 22.05: munged, slurmctld, slurmd) on this machine for the Slurm tests.

Everything lives in one temporary folder: the munge key and socket, ``slurm.conf`` (on
unprivileged ports, ``AuthInfo=socket=…`` pointing at our munged), the spool and state folders,
the daemons' logs. Two nodes, ``n1`` (``NodeAddr=127.0.0.2``) and ``n2`` (``127.0.0.3``), each its
own ``slurmd -N`` on its own port, so a two-host cluster file gets two real nodes, like the SSH
tests' two sshd "hosts". Clients find it through ``SLURM_CONF`` (``env``); nothing in /etc is
read or written. ``stop`` ends the daemons (and any job still running: slurmd's steps die with
it) and checks none is left.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import free_ports

NODES = {"n1": "127.0.0.2", "n2": "127.0.0.3"}
PARTITION = "pd"
INSTALL_HINT = "install it with `apt-get install -y slurmctld slurmd slurm-client munge` (.ci/run does this)"


class SlurmUnavailable(Exception):
    """Slurm cannot be had here; the tests that need it skip with this reason."""


# srun listens for its steps' I/O on ports of its own; left to the kernel they come from the
# ephemeral range the tests take the servers' ports from, and a step's srun once took a port a
# server was about to bind (CI: "address already in use" and srun's "Insane message length" from
# the health poll). A range above the kernel's (32768-60999) keeps the two apart.
SRUN_PORTS = "61000-61999"


def _conf(folder: Path, ctld_port: int, node_ports: dict[str, int]) -> str:
    nodes = "\n".join(
        f"NodeName={name} NodeAddr={addr} NodeHostname={socket.gethostname()} Port={node_ports[name]} "
        "CPUs=2 RealMemory=1000 State=UNKNOWN"
        for name, addr in NODES.items()
    )
    return f"""\
ClusterName=pytestpd
SlurmctldHost={socket.gethostname()}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={folder}/munge.socket
StateSaveLocation={folder}/ctld
SlurmdSpoolDir={folder}/spool-%n
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd-%n.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SlurmctldTimeout=30
SlurmdTimeout=30
KillWait=5
InactiveLimit=0
MinJobAge=600
SrunPortRange={SRUN_PORTS}
{nodes}
PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE
"""


@dataclass
class LocalSlurm:
    folder: Path
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def conf(self) -> Path:
        return self.folder / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def run(self, *argv: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, env={**os.environ, **self.env}
        )

    def start(self) -> None:
        f = self.folder
        for sub in ("ctld", *(f"spool-{n}" for n in NODES)):
            (f / sub).mkdir(parents=True, exist_ok=True)
        key = f / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self.procs.append(
            subprocess.Popen(
                ["munged", "-F", "--force", f"--key-file={key}", f"--socket={f}/munge.socket",
                 f"--pid-file={f}/munged.pid", f"--log-file={f}/munged.log", f"--seed-file={f}/munge.seed"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            )
        )  # fmt: skip
        self._wait(lambda: (f / "munge.socket").exists(), "munged's socket", f / "munged.log")
        ctld, *nodes = free_ports(1 + len(NODES))  # at once, so no two come back equal
        self.conf.write_text(_conf(f, ctld, dict(zip(NODES, nodes, strict=True))))
        env = {**os.environ, **self.env}
        self.procs.append(
            subprocess.Popen(["slurmctld", "-D", "-i"], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        )  # fmt: skip
        for node in NODES:
            self.procs.append(
                subprocess.Popen(["slurmd", "-D", "-N", node], env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
            )  # fmt: skip
        self._wait(self._idle, "both nodes idle in sinfo", f / "slurmctld.log")

    def _idle(self) -> bool:
        done = self.run("sinfo", "-h", "-N", "-o", "%N %t")
        states = dict(line.split() for line in done.stdout.splitlines() if line.strip())
        return done.returncode == 0 and all(states.get(n) == "idle" for n in NODES)

    def _wait(self, ready, what: str, log: Path, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            dead = [p.args[0] for p in self.procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
                self.stop()
                raise SlurmUnavailable(f"no {what} ({', '.join(dead) or 'timeout'} ); log {log}:\n{tail}")
            time.sleep(0.3)

    def jobs(self) -> list[str]:
        """``JOBID STATE NAME`` of every job the controller still lists as pending or running."""
        done = self.run("squeue", "-h", "-o", "%i %T %j")
        return [line for line in done.stdout.splitlines() if line.strip()]

    def stop(self) -> None:
        if self.procs and self.procs[0].poll() is None:
            self.run("scancel", "--full", "--user=root", timeout=30.0)
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=30.0)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10.0)
        self.procs.clear()


def start_slurm(folder: Path) -> LocalSlurm:
    for daemon in ("munged", "slurmctld", "slurmd", "sbatch", "srun"):
        if shutil.which(daemon) is None:
            raise SlurmUnavailable(f"{daemon} is not installed: {INSTALL_HINT}")
    if os.geteuid() != 0:
        raise SlurmUnavailable("a local Slurm needs root here (slurmd runs jobs as their user)")
    slurm = LocalSlurm(folder)
    slurm.start()
    return slurm


def slurm_cluster_copy(name: str, dest: Path, **overrides: object) -> Path:
    """A shipped sim cluster turned into ``launcher: slurm`` on the local Slurm: each host a node
    of the job (no address: Slurm places it), the router's metrics on all interfaces (reached at
    its node's address), fresh ports."""
    import yaml

    from tests.helpers import sim_cluster_copy
    from tests.helpers.sshd import remote_python

    path = sim_cluster_copy(name, dest, **overrides)
    data = yaml.safe_load(path.read_text())
    data["launcher"] = "slurm"
    data["hosts"] = {host: {"python": remote_python(), "gpus": 8} for host in data["hosts"]}
    data["router"]["prometheus_host"] = "0.0.0.0"
    data["slurm"] = {"partition": PARTITION, "time": "30:00", "start_timeout_s": 60}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def tagged_processes(run_dirs: list[Path]) -> list[str]:
    """Processes of this machine started by a session into one of ``run_dirs``: tagged with
    ``PYTEST_PD_RUN`` (inherited through srun by every step) and working in that folder (srun's
    and so its step's working directory). What a session's Slurm steps left behind."""
    from pytest_pd.cluster.host_agent import RUN_ENV

    folders = {str(d.resolve()) for d in run_dirs}
    left = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd in folders and any(e.startswith(RUN_ENV.encode() + b"=") for e in environ):
            left.append(f"pid {entry.name} in {cwd}")
    return left
