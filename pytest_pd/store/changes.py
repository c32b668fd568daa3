"""What differs between two runs' recorded facts (``summary.py``: versions, launch commands as
flags, commit, model, hosts), and whether two runs were launched alike: the history names the
changes next to a change point, the baseline pick refuses a stored run launched otherwise. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pytest_pd.store.summary import COMMAND_PREFIX, LAUNCH_FACT, VERSION_PREFIX, command_flags, command_lines

ABSENT = "(none)"


@dataclass(frozen=True)
class Change:
    fact: str  # "engine version", "--chunked-prefill-size", "commit", "model path", …
    before: str | None
    after: str | None
    where: tuple[str, ...] = ()  # the processes it changed on (versions, flags)

    @property
    def text(self) -> str:
        where = f" ({', '.join(self.where)})" if self.where else ""
        return f"{self.fact}{where}: {self.before or ABSENT} -> {self.after or ABSENT}"

    def to_dict(self) -> dict[str, object]:
        return {"fact": self.fact, "before": self.before, "after": self.after, "where": list(self.where)}


def _group(changes: list[tuple[str, str | None, str | None, str]]) -> list[Change]:
    """One change per (fact, before, after), naming every process it happened on."""
    grouped: dict[tuple[str, str | None, str | None], list[str]] = {}
    for fact, before, after, where in changes:
        grouped.setdefault((fact, before, after), []).append(where)
    return [Change(f, b, a, tuple(sorted(w))) for (f, b, a), w in grouped.items()]


def _flags(facts: Mapping[str, str], process: str) -> dict[str, str]:
    line = facts.get(COMMAND_PREFIX + process)
    return command_flags(line) if line is not None else {}


def diff_facts(before: Mapping[str, str], after: Mapping[str, str]) -> list[Change]:
    """Every recorded fact that differs: versions grouped across processes, launch commands
    compared flag by flag, the rest one by one (in the order the facts were recorded)."""
    versions, flags, plain = [], [], []
    names = list(dict.fromkeys([*before, *after]))
    for name in names:
        old, new = before.get(name), after.get(name)
        if old == new or name == LAUNCH_FACT:  # the commands' own facts say what changed
            continue
        if name.startswith(VERSION_PREFIX):
            versions.append(("engine version", old, new, name[len(VERSION_PREFIX) :]))
        elif name.startswith(COMMAND_PREFIX):
            process = name[len(COMMAND_PREFIX) :]
            if old is None or new is None:
                plain.append(
                    Change(f"process {process}", "started" if old else None, "started" if new else None)
                )
                continue
            a, b = _flags(before, process), _flags(after, process)
            for flag in dict.fromkeys([*a, *b]):
                if a.get(flag) != b.get(flag):
                    flags.append((flag, _shown(a.get(flag)), _shown(b.get(flag)), process))
        else:
            plain.append(Change(name, old, new))
    return _group(versions) + _group(flags) + plain


def _shown(value: str | None) -> str | None:
    """A flag's value for people: a switch that is on reads "on"."""
    return None if value is None else (value or "on")


def launch_changes(before: str | None, after: str | None) -> list[Change]:
    """How two launch identities (``cluster/commands.py: launch_identity``: the launch commands
    with ports, addresses and interpreters masked) differ: each process's flags and own
    variables, the environment exported on every host. [] when either is unknown (a run stored
    before runs recorded one)."""
    if before is None or after is None:
        return []
    return diff_facts(command_lines(before), command_lines(after))
