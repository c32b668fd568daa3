"""Runs whose session died without teardown (SIGKILL, the OOM killer, a lost CI runner): found and
stopped by the next session that takes the same host lock, before it starts anything.

Each host lock keeps a ledger of the runs that took it (``host_agent``: one JSON file per run next to
the lock; every process carries its run's id in its environment). Holding the lock proves that no
other live session uses the host, so every other run still in the ledger is stale, except one
kept on purpose (``--pd-keep-cluster-on-failure``), which is only reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pytest_pd.cluster import host_agent
from pytest_pd.errors import HostError

if TYPE_CHECKING:
    pass

Say = Callable[[str], None]
STOP_GRACE_S = 10.0
AGENT_SOURCE = Path(host_agent.__file__).read_text(encoding="utf-8")


class Agent(Protocol):
    def call(self, command: str, **kwargs: Any) -> Any: ...


class LocalAgent:
    def call(self, command: str, **kwargs: Any) -> Any:
        return host_agent.COMMANDS[command](**kwargs)


@dataclass
class RunLedger:
    """The runs recorded next to one host lock (``folder``), read and changed through ``agent``."""

    agent: Agent
    folder: str
    label: str  # "this machine (launcher: local)", "host decode-node (10.0.0.2)"

    def record(self, entry: dict[str, Any]) -> None:
        self.agent.call("record", folder=self.folder, entry=entry)

    def forget(self, run: str) -> None:
        self.agent.call("forget", folder=self.folder, run=run)

    def runs(self) -> list[dict[str, Any]]:
        return list(self.agent.call("runs", folder=self.folder))

    def stop(self, run: str) -> list[dict[str, Any]]:
        return list(self.agent.call("stop", folder=self.folder, run=run, grace_s=STOP_GRACE_S))


def run_entry(
    run: str, cluster: str, run_dir: Path, owner: str, *, started: float | None = None, kept: bool = False
) -> dict[str, Any]:
    return {
        "run": run,
        "cluster": cluster,
        "run_dir": str(run_dir),
        "owner": owner,
        "started": started or time.time(),
        "kept": kept,
    }


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _by_name(procs: list[dict[str, Any]]) -> str:
    pids: dict[str, list[str]] = {}
    for proc in procs:
        pids.setdefault(proc["name"], []).append(str(proc["pid"]))
    return ", ".join(f"{name} (pid {', '.join(group)})" for name, group in pids.items())


def describe(entry: dict[str, Any]) -> str:
    """One run of a ledger, for a person: which run, whose, how old, what still runs."""
    procs = entry.get("processes", [])
    age = max((p["age_s"] for p in procs), default=time.time() - entry.get("started", time.time()))
    listed = _by_name(procs) or "no process left"
    return (
        f"run {entry['run']} of cluster {entry.get('cluster', '?')} (run directory "
        f"{entry.get('run_dir', '?')}; started {_age(age)} ago by "
        f"{entry.get('owner') or 'an unknown session'}): {listed}"
    )


def reap_stale(ledger: RunLedger, say: Say, *, own_run: str | None = None) -> int:
    """Stop every stale run of ``ledger`` (call it while holding the ledger's host lock); report
    kept ones. Returns how many runs were stopped."""
    stopped = 0
    for entry in ledger.runs():
        if entry["run"] == own_run:
            continue
        if not entry.get("processes"):
            ledger.forget(entry["run"])  # torn down by `pytest-pd down`, or its last process died
            continue
        if entry.get("kept"):
            say(
                f"{ledger.label}: a cluster kept for debugging (--pd-keep-cluster-on-failure) is "
                f"still running: {describe(entry)}. `pytest-pd down {entry.get('run_dir', 'RUN_DIR')}` "
                "stops it."
            )
            continue
        say(
            f"{ledger.label}: found a run whose session died without tearing down: "
            f"{describe(entry)}. Stopping it (SIGTERM, SIGKILL after {STOP_GRACE_S:g} s); its "
            "logs stay where they are."
        )
        left = ledger.stop(entry["run"])
        if left:
            raise HostError(
                f"{ledger.label}: processes of stale run {entry['run']} survived SIGKILL: "
                f"{_by_name(left)}. Inspect them there (`ps -o pid,stat,cmd -p PID`) and stop them by hand."
            )
        ledger.forget(entry["run"])
        say(f"{ledger.label}: stale run {entry['run']} stopped; nothing of it is left.")
        stopped += 1
    return stopped


def listing(ledger: RunLedger, holder: str | None) -> list[str]:
    """Lines for `pytest-pd ps`: each run in the ledger with its state and processes.
    ``holder``: who holds the host lock now (None: nobody)."""
    lines = []
    for entry in ledger.runs():
        if not entry.get("processes"):
            state = "finished (nothing left)"
        elif entry.get("kept"):
            state = "kept for debugging"
        elif holder is not None and entry.get("run_dir", "\0") in holder:
            state = "running (its session is alive)"
        else:
            state = "STALE (its session is gone; the next session or `pytest-pd down` stops it)"
        lines.append(f"  {state}: {describe(entry)}")
    return lines
