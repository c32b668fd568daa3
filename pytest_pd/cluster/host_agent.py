"""What pytest-pd runs on one host, seen from that host (Linux ``/proc``).

Standard library only: this file's source is also sent to SSH hosts and run there with the host's
Python (``python - COMMAND JSON``), so one implementation serves this machine and every SSH host.

- Every process pytest-pd starts carries ``PYTEST_PD_RUN=<run id>`` and ``PYTEST_PD_PROC=<name>``
  in its environment, which its children inherit, and leads its own session.
- Next to each host lock, the folder ``<lock>.runs/`` holds one small JSON file per run that took
  the lock (run id, cluster, run directory, owner, start time, ``kept``, and the session leaders it
  started: PID and start time on this boot, so a PID reused by another program is never taken
  for ours). A run removes its file
  once its processes are gone. A file that is still there when the next session holds the lock
  therefore names a run whose session died without teardown (or one kept for debugging).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

RUN_ENV = "PYTEST_PD_RUN"
PROC_ENV = "PYTEST_PD_PROC"
_TAGS = (RUN_ENV.encode() + b"=", PROC_ENV.encode() + b"=")


def _tags(pid: int) -> dict[bytes, str]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            raw = fh.read()
    except OSError:  # gone, or another user's process
        return {}
    found = {}
    for item in raw.split(b"\0"):
        for tag in _TAGS:
            if item.startswith(tag):
                found[tag] = item[len(tag) :].decode("utf-8", "replace")
    return found


def _stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, process group, session, start time in clock ticks since boot); None once gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return fields[0], int(fields[2]), int(fields[3]), int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def boot_id() -> str:
    with open("/proc/sys/kernel/random/boot_id", encoding="utf-8") as fh:
        return fh.read().strip()


def _uptime_ticks() -> float:
    with open("/proc/uptime", encoding="utf-8") as fh:
        return float(fh.read().split()[0]) * os.sysconf("SC_CLK_TCK")


def members(entries: list[dict]) -> list[dict]:
    """Live processes of the runs ``entries`` describe, oldest first. A process is a run's when
    its environment carries the run's tag, or when it is (or is in the session of) a process the
    run started, identified by PID *and* start time on this boot: programs that rewrite their
    process title (sglang-router, SGLang's schedulers) also wipe what /proc shows of their
    environment."""
    boot = boot_id()
    leaders: dict[int, str] = {}
    for entry in entries:
        if entry.get("boot") == boot:
            for leader in entry.get("leaders", []):
                stat = _stat(int(leader["pid"]))
                if stat is not None and stat[3] == leader.get("start"):
                    leaders[int(leader["pid"])] = entry["run"]
    wanted = {entry["run"] for entry in entries}
    names = {int(leader["pid"]): leader["name"] for e in entries for leader in e.get("leaders", [])}
    now, tick = _uptime_ticks(), os.sysconf("SC_CLK_TCK")
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        stat = _stat(pid)
        if stat is None or stat[0] == "Z":
            continue
        tags = _tags(pid)
        run = tags.get(_TAGS[0]) or leaders.get(pid) or leaders.get(stat[2])
        if run not in wanted:
            continue
        name = tags.get(_TAGS[1]) or names.get(pid) or names.get(stat[2], "?")
        out.append(
            {
                "pid": pid,
                "pgid": stat[1],
                "run": run,
                "name": name,
                "age_s": round(max(now - stat[3], 0) / tick, 1),
            }
        )
    return sorted(out, key=lambda p: -p["age_s"])


KILL_WAIT_S = 5.0  # how long SIGKILL gets to take effect before what is left counts as surviving


def _escalate(
    send: Callable[[list[dict], int], None], left: Callable[[], list[dict]], grace_s: float, every_s: float
) -> list[dict]:
    """How pytest-pd stops processes, everywhere: SIGTERM what ``left()`` lists (``send(found,
    signal)``), wait up to ``grace_s`` for it to go, SIGKILL what is left, wait up to
    ``KILL_WAIT_S`` more, confirm; what survived even that (nothing: all gone)."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, KILL_WAIT_S)):
        found = left()
        if not found:
            return []
        send(found, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not left():
                return []
            time.sleep(every_s)
    return left()


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            raw = fh.read()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode("utf-8", "replace").strip() or "?"


def group_members(pgid: int) -> list[dict]:
    """Live processes of process group ``pgid`` (pid, state, cmd), oldest PID first. A zombie is
    not one: it is gone, only not yet reaped by its parent."""
    if pgid <= 1:  # 0 and -1 would be this process's own group and every process there is
        raise ValueError(f"not a process group pytest-pd started: {pgid}")
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return []  # not even a zombie is left
    except PermissionError:
        pass  # another user's group: /proc still tells
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = _stat(int(name))
            if stat is not None and stat[1] == pgid and stat[0] != "Z":
                out.append({"pid": int(name), "state": stat[0], "cmd": _cmdline(int(name))})
    return sorted(out, key=lambda p: p["pid"])


def kill_group(pgid: int, grace_s: float = 10.0) -> list[dict]:
    """Stop process group ``pgid`` (SIGTERM, SIGKILL after ``grace_s``, confirmed); the processes
    that survived (``group_members``), none once the group is gone. A leader that is the
    caller's child is left a zombie for the caller to reap."""

    def send(found: list[dict], sig: int) -> None:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass  # gone meanwhile, or not ours to signal: what is left tells

    return _escalate(send, lambda: group_members(pgid), grace_s, every_s=0.05)


def _signal(found: list[dict], sig: int) -> None:
    """Each process, and the whole group of each group leader (the processes a run starts lead
    their own session and group: every member is their descendant)."""
    for proc in found:
        target = (-proc["pgid"]) if proc["pgid"] == proc["pid"] else proc["pid"]
        try:
            os.kill(target, sig)
        except (ProcessLookupError, PermissionError):
            pass


def stop(folder: str, run: str, grace_s: float = 10.0) -> list[dict]:
    """SIGTERM every process of ``run``, SIGKILL what is left after ``grace_s``; what survives."""
    entries = [e for e in runs(folder) if e["run"] == run] or [{"run": run}]
    return _escalate(_signal, lambda: members(entries), grace_s, every_s=0.1)


def _entry_path(folder: str, run: str) -> str:
    return os.path.join(
        os.path.expanduser(folder), "".join(c if c.isalnum() or c in "._-" else "_" for c in run) + ".json"
    )


def runs(folder: str) -> list[dict]:
    """Every run recorded in ``folder``, each with its live processes (``processes``)."""
    folder = os.path.expanduser(folder)
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".json"))
    except FileNotFoundError:
        return []
    entries = []
    for name in names:
        try:
            with open(os.path.join(folder, name), encoding="utf-8") as fh:
                entry = json.load(fh)
            entry["run"] = str(entry["run"])
        except (OSError, ValueError, KeyError, TypeError) as exc:  # half-written by a dying session
            entry = {"run": name[:-5], "unreadable": f"{type(exc).__name__}: {exc}"}
        entries.append(entry)
    live = members(entries)
    for entry in entries:
        entry["processes"] = [p for p in live if p["run"] == entry["run"]]
    return entries


def record(folder: str, entry: dict) -> None:
    """Write (or rewrite) the file of one run, atomically, with this boot's id and the start time
    of each process it lists in ``leaders`` ({name, pid})."""
    entry = {
        **entry,
        "boot": boot_id(),
        "leaders": [
            {**leader, "start": (_stat(int(leader["pid"])) or (0, 0, 0, None))[3]}
            for leader in entry.get("leaders", [])
        ],
    }
    path = _entry_path(folder, entry["run"])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(entry, fh)
    os.replace(tmp, path)


def forget(folder: str, run: str) -> None:
    try:
        os.unlink(_entry_path(folder, run))
    except FileNotFoundError:
        pass


COMMANDS: dict[str, Callable[..., Any]] = {
    "stop": stop,
    "kill_group": kill_group,
    "runs": runs,
    "record": record,
    "forget": forget,
}


def main(argv: list[str]) -> None:
    """``COMMAND JSON-KWARGS``: run one command, print its result as JSON."""
    result = COMMANDS[argv[1]](**json.loads(argv[2]))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main(sys.argv)
