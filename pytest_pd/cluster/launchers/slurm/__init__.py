"""``launcher: slurm``: the bring-up is one Slurm job. Connecting submits it (one node per host of
the file; its batch script only holds the nodes) and waits until it runs; each host becomes one of
its nodes, at the node's ``NodeAddr``. Every server and the router then run as a step of that job
(``srun --jobid --overlap``) started from this machine, so their output streams back into the run
directory and a step's exit code is its process's. Slurm's job replaces the host locks; teardown
stops each step, then ``scancel``s the job and checks that it has ended."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_pd.cluster.hosts import CommandResult, Proc
from pytest_pd.cluster.launchers import Say
from pytest_pd.cluster.launchers.local import LocalHost
from pytest_pd.cluster.launchers.slurm.job import SlurmJob, job_name
from pytest_pd.cluster.launchers.slurm.lease import SessionLease, cancel_stale, session_jobs
from pytest_pd.cluster.launchers.ssh.scripts import ports_in_use
from pytest_pd.cluster.locks import MachineLock, local_lock_dir
from pytest_pd.errors import HostError

if TYPE_CHECKING:
    from pytest_pd.cluster.safe_yaml import Loc
    from pytest_pd.cluster.spec import ClusterSpec


class SlurmHost:
    """A host of the cluster file as one node of the bring-up's job: every command is a job step
    there, run by an ``srun`` on this machine (a ``LocalHost`` process)."""

    def __init__(self, name: str, job: SlurmJob, node: str, srun_args: Sequence[str], python: str) -> None:
        self.name = name
        self.job = job
        self.node = node
        self.srun_args = list(srun_args)
        self.python = python
        self._srun = LocalHost(name)

    def _step(self, step_name: str, argv: Sequence[str]) -> list[str]:
        return [
            "srun", f"--jobid={self.job.id}", "--overlap", "--nodes=1", "--ntasks=1",
            f"--nodelist={self.node}", f"--job-name={step_name}",
            *self.srun_args, *argv,
        ]  # fmt: skip

    def run(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        timeout: float = 60.0,
    ) -> CommandResult:
        return self._srun.run(self._step("pytest-pd", argv), env=env, cwd=cwd, timeout=timeout)

    def start_detached(self, name: str, argv: tuple[str, ...], env: dict[str, str], run_dir: Path) -> Proc:
        return self._srun.start_detached(name, tuple(self._step(name, argv)), env, run_dir)

    def adopt(self, name: str, pid: int, run_dir: Path) -> Proc:
        raise HostError(f"a Slurm step cannot be adopted; `scancel {self.job.id}` ends the job")

    def exit_code(self, proc: Proc) -> int | None:
        return self._srun.exit_code(proc)  # srun exits with its task's code once the step ends

    def alive(self, proc: Proc) -> bool:
        return self.exit_code(proc) is None

    def kill_tree(self, proc: Proc, grace_s: float = 10.0) -> None:
        """``scancel`` the step (Slurm sends SIGTERM, then SIGKILL after its KillWait), wait for
        its srun to end, stop the srun's own group if it lingers, and check the step is gone."""
        for step in self.job.step_ids(proc.name):
            self.job.cancel(step)
        if proc.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):  # then its group is stopped below
                proc.popen.wait(timeout=grace_s + 30.0)
        self._srun.kill_tree(proc, grace_s)
        deadline = time.monotonic() + 30.0  # the controller lists a step until slurmd reports it gone
        while (left := self.job.step_ids(proc.name)) and time.monotonic() < deadline:
            time.sleep(0.5)
        if left:
            raise HostError(
                f"Slurm step {', '.join(left)} ({proc.name} on node {self.node}) is still running after "
                f"scancel; `scancel {self.job.id}` ends the whole job."
            )

    def tail_log(self, proc: Proc, lines: int = 40) -> str:
        """The step's output, and Slurm's word on the job once it no longer runs (cancelled from
        outside, out of time, a node failed)."""
        text = self._srun.tail_log(proc, lines)
        with contextlib.suppress(HostError):
            state = self.job.settled_state()
            if state.state != "RUNNING":
                text += f"[Slurm job {self.job.id} ({self.job.name}) is {state}]\n"
        return text

    def fetch_log(self, proc: Proc, dest_dir: Path) -> Path:
        return proc.log_path  # srun brought it here as the step ran

    def ports_in_use(self, wanted: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
        where = f"node {self.node} (host {self.name}, a step of Slurm job {self.job.id})"
        return ports_in_use(lambda argv: self.run(argv, timeout=60.0), self.python, wanted, where, self.name)

    def close(self) -> None:
        pass


class SlurmHosts:
    """The hosts of one Slurm bring-up: the nodes of its job, which ``connect`` submits."""

    def __init__(self, spec: ClusterSpec, say: Say) -> None:
        self.spec = spec
        self.say = say
        self.job: SlurmJob | None = None
        self.lease: SessionLease | None = None
        self._hosts: dict[str, SlurmHost] = {}
        self._addresses: dict[str, str] = {}

    def get(self, name: str) -> SlurmHost:
        if name not in self._hosts:
            raise HostError(f"host {name} is not part of Slurm job {self.job.id if self.job else '(none)'}")
        return self._hosts[name]

    def connect(self, names: Sequence[str]) -> None:
        """Submit the job (a node per host; hosts with ``node:`` get theirs), wait until it runs,
        and give each host its node."""
        if self.job is not None:
            return
        spec = self.spec
        name = job_name(spec.label)
        cancel_stale(name, lambda text: self.say(f"{spec.label}: {text}"))
        pinned = {n: node for n in names if (node := spec.hosts[n].node)}
        self.lease = self.lease or SessionLease(local_lock_dir(None))
        job = self.job = SlurmJob.submit(
            spec.slurm, name, len(names), list(pinned.values()), self.lease.comment
        )
        self.say(f"{spec.label}: submitted Slurm job {job.id} for {len(names)} node(s)")
        state = job.wait_running(spec.slurm.start_timeout_s, self.say)
        nodes = job.node_addresses(state.nodes)
        free = [n for n in nodes if n[0] not in pinned.values()]
        for name in names:
            node = pinned.get(name)
            node, address = next(n for n in nodes if n[0] == node) if node else free.pop(0)
            python = LAUNCHER.interpreter(spec.hosts[name].python, "python")
            self._hosts[name] = SlurmHost(name, job, node, spec.slurm.srun_args, python)
            self._addresses[name] = address
            self.say(f"{spec.label}: host {name} is node {node} ({address}) of Slurm job {job.id}")

    def addresses(self) -> dict[str, str]:
        return dict(self._addresses)

    def machine_locks(self, names: Sequence[str], info: str) -> list[MachineLock]:
        return []  # the job is the lock: Slurm gives its nodes to no one else meanwhile

    def close(self) -> None:
        """End the job (every step with it) and check Slurm says so."""
        job, self.job = self.job, None
        lease, self.lease = self.lease, None
        self._hosts.clear()
        self._addresses.clear()
        try:
            if job is not None:
                job.end()
                self.say(f"{self.spec.label}: Slurm job {job.id} ended")
        finally:
            if lease is not None:
                lease.release()


class SlurmLauncher:
    name = "slurm"
    manages_processes = True
    parallel_starts = True
    allocates = True

    def problems(self, spec: ClusterSpec) -> list[tuple[Loc, str]]:
        found: list[tuple[Loc, str]] = [
            (
                ("hosts", name, "address"),
                "launcher: slurm places each host on a node of its job (at the node's NodeAddr): "
                "remove `address`; `node: NAME` asks for a given node",
            )
            for name, host in spec.hosts.items()
            if host.address
        ]
        nodes = [h.node for h in spec.hosts.values() if h.node]
        found += [
            (("hosts",), f"node {n} is named by two hosts") for n in sorted(set(nodes)) if nodes.count(n) > 1
        ]
        return found

    def interpreter(self, configured: str | None, local_python: str) -> str:
        return configured or "python"  # a path on the nodes, used verbatim (give an absolute one)

    def where(self, host: str) -> str:
        return f" on {host}"

    def hosts(self, spec: ClusterSpec, *, say: Say, local_python: str) -> SlurmHosts:
        return SlurmHosts(spec, say)

    def commands_comment(self, spec: ClusterSpec) -> list[str]:
        return [
            "# launcher: slurm: one job holds a node per host (sbatch --nodes=N, a script that sleeps);",
            "# each line below runs on its host's node as a step of it: srun --jobid=JOB --overlap",
            "# --nodes=1 --ntasks=1 --nodelist=NODE [slurm.srun_args] LINE; <host> is that node's NodeAddr",
        ]

    def adopt_problem(self, spec: ClusterSpec) -> str | None:
        return (
            f"{spec.label} runs as a Slurm job, which ends with its session; one a killed session "
            f"left is listed by `pytest-pd ps --cluster {spec.label}` and cancelled by "
            f"`pytest-pd down --cluster {spec.label}` (or the next session). There is nothing to adopt."
        )

    def show_allocations(self, spec: ClusterSpec, *, end_stale: bool, say: Say, show: Say) -> None:
        """This user's jobs of the cluster, with whose session each is; ``end_stale`` cancels
        those whose session died without teardown."""
        label, name = spec.label, job_name(spec.label)
        if end_stale:
            cancelled = cancel_stale(name, say)
            say(
                f"{label}: "
                + (f"{cancelled} stale Slurm job(s) cancelled" if cancelled else "no stale Slurm job")
            )
        jobs = session_jobs(name)
        if not end_stale or jobs:
            show(f"{label} (launcher: slurm): " + (f"{len(jobs)} job(s) named {name}" if jobs else "no job"))
        for job in jobs:
            show(f"  {JOB_OWNERS[job.owner].format(id=job.id)}: {job.describe()}")


JOB_OWNERS = {
    "live": "in use by a live session",
    "stale": "STALE (its session is gone; `pytest-pd down --cluster` cancels it)",
    "elsewhere": "its session ran on another machine (`pytest-pd ps/down --cluster` there)",
    "unknown": "not from a pytest-pd session (`scancel {id}` if it is yours to end)",
}


LAUNCHER = SlurmLauncher()
