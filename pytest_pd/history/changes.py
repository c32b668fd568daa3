"""What changed between two stored runs, in the facts they recorded (``store/summary.py``:
versions, launch commands as flags, commit, model, hosts): the answer a team wants next to a change
point. Pure."""

from __future__ import annotations

from pytest_pd.store.changes import Change, diff_facts
from pytest_pd.store.summary import StoredRun


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
