"""One Slurm job holding a bring-up's nodes: submitted with ``sbatch`` (its batch script only
sleeps), watched with ``scontrol``, ended with ``scancel`` and checked gone. The servers and the
router run as steps of it (``SlurmHost``). Parsing is pure; the Slurm commands are the only side
effect, run on this machine with whatever ``SLURM_CONF`` the environment names."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pytest_pd.cluster.spec import SlurmSpec
from pytest_pd.errors import BringUpError, HostError

Say = Callable[[str], None]

# Slurm's job states once it no longer runs (squeue/scontrol JobState)
ENDED = {
    "BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY",
    "PREEMPTED", "TIMEOUT",
}  # fmt: skip
HOLDER_SCRIPT = (
    "#!/bin/sh\n# pytest-pd: holds the nodes; the servers and the router run as steps\nexec sleep infinity\n"
)


def job_name(cluster_label: str) -> str:
    """The name of a bring-up's job: ``squeue --name=pytest-pd:LABEL`` finds it."""
    return f"pytest-pd:{cluster_label}"


def parse_record(line: str) -> dict[str, str]:
    """``scontrol show ... -o`` output (``Key=Value`` words on one line) as a dict."""
    fields: dict[str, str] = {}
    for word in line.split():
        key, sep, value = word.partition("=")
        if sep:
            fields[key] = value
    return fields


def sbatch_argv(
    slurm: SlurmSpec, job_name: str, nodes: int, pinned: Sequence[str], comment: str = ""
) -> list[str]:
    """The ``sbatch`` command of a bring-up's job (its script comes on stdin)."""
    argv = ["sbatch", "--parsable", f"--job-name={job_name}", f"--nodes={nodes}", "--ntasks-per-node=1"]
    if comment:
        argv.append(f"--comment={comment}")  # whose job it is (see lease.py)
    argv.append("--output=/dev/null")  # the steps' output comes back through srun, into the run dir
    for flag, value in (
        ("--partition", slurm.partition),
        ("--account", slurm.account),
        ("--qos", slurm.qos),
        ("--time", slurm.time),
    ):
        if value:
            argv.append(f"{flag}={value}")
    if pinned:
        argv.append(f"--nodelist={','.join(pinned)}")
    return argv + list(slurm.sbatch_args)


@dataclass
class JobState:
    state: str  # RUNNING, PENDING, CANCELLED, … ("GONE": the controller no longer knows the job)
    reason: str
    nodes: str  # Slurm's node list expression, "n[1-2]"

    def __str__(self) -> str:
        return self.state + (f" (reason: {self.reason})" if self.reason not in ("", "None") else "")


def slurm(
    argv: Sequence[str], *, stdin: str | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            list(argv), input=stdin, capture_output=True, text=True, timeout=timeout, env=os.environ.copy()
        )
    except FileNotFoundError:
        raise HostError(
            f"{argv[0]} not found: launcher: slurm runs Slurm's commands (sbatch, srun, squeue, scontrol, "
            "scancel) on this machine; run pytest on a login node of the cluster, or put them on PATH."
        ) from None
    except subprocess.TimeoutExpired:
        raise HostError(
            f"`{' '.join(argv)}` did not answer within {timeout:.0f} s: is slurmctld up?"
        ) from None


class SlurmJob:
    def __init__(self, job_id: str, name: str) -> None:
        self.id = job_id
        self.name = name

    @classmethod
    def submit(
        cls, slurm_spec: SlurmSpec, name: str, nodes: int, pinned: Sequence[str], comment: str = ""
    ) -> SlurmJob:
        argv = sbatch_argv(slurm_spec, name, nodes, pinned, comment)
        done = slurm(argv, stdin=HOLDER_SCRIPT)
        job_id = done.stdout.strip().split(";")[0]
        if done.returncode != 0 or not job_id.isdigit():
            raise BringUpError(
                f"Slurm refused the job: `{' '.join(argv)}` said: {(done.stderr or done.stdout).strip()}. "
                "Check the slurm: block of the cluster file (partition, account, time) against `sinfo`."
            )
        return cls(job_id, name)

    def state(self) -> JobState:
        done = slurm(["scontrol", "show", "job", "-o", self.id], timeout=30.0)
        if done.returncode != 0:
            if "Invalid job id" in done.stderr:
                return JobState("GONE", "", "")
            raise HostError(f"cannot read Slurm job {self.id}: {done.stderr.strip()}")
        fields = parse_record(done.stdout)
        return JobState(fields.get("JobState", "?"), fields.get("Reason", ""), fields.get("NodeList", ""))

    def settled_state(self, timeout_s: float = 10.0) -> JobState:
        """The job's state once it is no longer COMPLETING (its steps being killed): what ended it."""
        deadline = time.monotonic() + timeout_s
        state = self.state()
        while state.state == "COMPLETING" and time.monotonic() < deadline:
            time.sleep(0.5)
            state = self.state()
        return state

    def wait_running(self, timeout_s: float, say: Say) -> JobState:
        """Wait until Slurm starts the job; a job that ends or stays pending fails bring-up."""
        start = time.monotonic()
        next_note = start + 10.0
        while True:
            state = self.state()
            if state.state == "RUNNING":
                return state
            waited = time.monotonic() - start
            if state.state in ENDED or state.state == "GONE" or waited > timeout_s:
                self.cancel()
                raise BringUpError(
                    f"Slurm job {self.id} ({self.name}) did not start: {state} after {waited:.0f} s. "
                    "`sinfo` shows what the partition has free; raise slurm.start_timeout_s in the "
                    "cluster file to wait longer for busy nodes."
                )
            if time.monotonic() > next_note:
                say(f"waiting for Slurm job {self.id}: {state} ({waited:.0f} s of {timeout_s:.0f} s)")
                next_note += 30.0
            time.sleep(0.5)

    def node_addresses(self, nodes: str) -> list[tuple[str, str]]:
        """(node, address) of each node of the job, in Slurm's order."""
        names = slurm(["scontrol", "show", "hostnames", nodes]).stdout.split()
        found = []
        for node in names:
            record = parse_record(slurm(["scontrol", "show", "node", "-o", node]).stdout)
            found.append((node, record.get("NodeAddr") or node))
        return found

    def step_ids(self, step_name: str) -> list[str]:
        """Ids (``JOB.STEP``) of the job's live steps named ``step_name``."""
        done = slurm(["squeue", "--steps", "-h", "-j", self.id, "-o", "%i %j"], timeout=30.0)
        return [w[0] for w in (line.split() for line in done.stdout.splitlines()) if w[1:] == [step_name]]

    def cancel(self, target: str | None = None) -> None:
        slurm(["scancel", "--quiet", target or self.id], timeout=30.0)

    def end(self, timeout_s: float = 60.0) -> None:
        """``scancel`` the job and wait until Slurm says it has ended (its steps killed)."""
        deadline = time.monotonic() + timeout_s
        self.cancel()
        while True:
            state = self.state()
            if state.state in ENDED or state.state == "GONE":
                return
            if time.monotonic() > deadline:
                raise HostError(
                    f"Slurm job {self.id} ({self.name}) is still {state} {timeout_s:.0f} s after scancel; "
                    f"check `scontrol show job {self.id}` and the nodes {state.nodes}."
                )
            time.sleep(0.5)
