"""What changed between two stored runs, in the facts they recorded (``store/summary.py``:
versions, launch commands as flags, commit, model, hosts): the answer a team wants next to a change
point. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pytest_pd.store.summary import COMMAND_PREFIX, VERSION_PREFIX, StoredRun, command_flags

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
        if old == new:
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


def what_changed(
    before: StoredRun,
    after: StoredRun,
    baseline_before: StoredRun | None = None,
    baseline_after: StoredRun | None = None,
) -> list[Change]:
    """What changed on the candidate's side and, for a ratio to the baseline, on the baseline's
    (its facts named "baseline …", a re-marked baseline among them)."""
    out = diff_facts(before.facts, after.facts)
    if baseline_before is not None and baseline_after is not None:
        for change in diff_facts(_with_mark(baseline_before), _with_mark(baseline_after)):
            out.append(Change(f"baseline {change.fact}", change.before, change.after, change.where))
    return out


def _with_mark(run: StoredRun) -> dict[str, str]:
    return {**run.facts, "marked (--pd-save-baseline)": "yes" if run.baseline_mark else "no"}


def summary_line(changes: list[Change]) -> str:
    if not changes:
        return "nothing recorded changed (look at the machines, the network or the load)"
    return "; ".join(c.text for c in changes)
