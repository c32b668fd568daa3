"""Whose a bring-up's Slurm job is, so that a job whose session died without teardown (SIGKILL, the
OOM killer, a lost CI runner) is found and cancelled instead of holding its nodes until its time
limit.

Each job is submitted with ``--comment=pytest-pd session HOST LEASE``. LEASE is a file on HOST, the
machine that ran ``sbatch``, that the session keeps locked (``filelock``) for as long as the job
lives; the operating system drops the lock when the session's process dies, however it dies. So a
job is stale when its lease is no longer locked: never judged by a PID, which the system reuses. A
job whose comment names another machine is left alone: only a session there can tell."""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

import filelock

from pytest_pd.cluster.launchers.slurm.job import Say, SlurmJob, slurm

COMMENT_PREFIX = "pytest-pd session"


def parse_comment(comment: str) -> tuple[str, str] | None:
    """(host, lease path) from a job's comment, or None when pytest-pd did not write it."""
    if not comment.startswith(COMMENT_PREFIX + " "):
        return None
    words = comment[len(COMMENT_PREFIX) + 1 :].split(" ", 1)
    return (words[0], words[1]) if len(words) == 2 and all(words) else None


class SessionLease:
    """The lock a session holds while its job lives, and the job comment that names it."""

    def __init__(self, lock_dir: Path) -> None:
        folder = lock_dir / "slurm"
        folder.mkdir(parents=True, exist_ok=True)
        self.host = socket.gethostname()
        self.path = folder / f"{self.host}-{os.getpid()}-{uuid.uuid4().hex[:8]}.lease"
        self._lock = filelock.FileLock(str(self.path), thread_local=False)
        self._lock.acquire(timeout=0)

    @property
    def comment(self) -> str:
        return f"{COMMENT_PREFIX} {self.host} {self.path}"

    def release(self) -> None:
        self._lock.release(force=True)
        with contextlib.suppress(OSError):
            self.path.unlink()


def lease_alive(path: str) -> bool:
    """Whether a session on this machine still holds the lease at ``path``."""
    if not Path(path).exists():
        return False
    lock = filelock.FileLock(path, thread_local=False)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        return True
    lock.release(force=True)
    with contextlib.suppress(OSError):
        Path(path).unlink()
    return False


@dataclass(frozen=True)
class SessionJob:
    """A job of ours named like a bring-up's, and what is known of its session."""

    id: str
    name: str
    state: str
    comment: str

    @property
    def owner(self) -> str:
        """live, stale (its session is gone), elsewhere (a session on another machine) or unknown
        (no pytest-pd comment: submitted by hand, or by an older pytest-pd)."""
        found = parse_comment(self.comment)
        if found is None:
            return "unknown"
        host, path = found
        if host != socket.gethostname():
            return "elsewhere"
        return "live" if lease_alive(path) else "stale"

    def describe(self) -> str:
        session = parse_comment(self.comment)
        where = f"session on {session[0]}" if session else "no pytest-pd session recorded"
        return f"Slurm job {self.id} ({self.name}, {self.state}; {where})"


def session_jobs(name: str) -> list[SessionJob]:
    """This user's jobs named ``name`` that have not ended, as ``squeue`` lists them."""
    done = slurm(["squeue", "--me", "--noheader", f"--name={name}", "--format=%i|%T|%k"], timeout=30.0)
    jobs = []
    for line in done.stdout.splitlines():
        job_id, _, rest = line.partition("|")
        state, _, comment = rest.partition("|")
        if job_id.strip():
            jobs.append(SessionJob(job_id.strip(), name, state.strip(), comment.strip()))
    return jobs


def cancel_stale(name: str, say: Say) -> int:
    """``scancel`` every job named ``name`` whose session died without teardown; how many."""
    stale = [job for job in session_jobs(name) if job.owner == "stale"]
    for job in stale:
        say(f"found {job.describe()} whose session died without tearing down. Cancelling it")
        SlurmJob(job.id, name).end()
        say(f"Slurm job {job.id} cancelled; nothing of it is left")
    return len(stale)
