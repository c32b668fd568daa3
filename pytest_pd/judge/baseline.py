"""Where a workload's baseline comes from (``--pd-baseline``): measured live in this session, the
stored run the results store picks, or a given results file or folder. Decided before anything is
measured, so a missing stored baseline fails at once. A stored run of the baseline cluster counts
only if it was launched as the cluster file launches it now: after an edit of that file, its
earlier runs measured something else."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pytest_pd import results as store
from pytest_pd.cluster.commands import launch_identity
from pytest_pd.cluster.spec import ClusterSpec
from pytest_pd.errors import BaselineError
from pytest_pd.record import RunRecord
from pytest_pd.redaction import redact_commands
from pytest_pd.store.changes import Change, launch_changes
from pytest_pd.store.summary import LAUNCH_FACT
from pytest_pd.workload.spec import Workload


class Measurements(Protocol):
    """What the policy asks of the session's measurer."""

    results_dir: Path | None

    def baseline_of(self, spec: ClusterSpec) -> ClusterSpec: ...

    def cached(self, spec: ClusterSpec, workload: Workload | str) -> object | None: ...


@dataclass
class BaselinePlan:
    live: ClusterSpec | None = None  # measure this cluster in this session
    stored: RunRecord | None = None  # or use this stored run
    source: str = ""  # where it came from, for the report


def plan_baseline(
    mode: str,
    max_age_s: float,
    measurer: Measurements,
    spec: ClusterSpec,
    workload: Workload,
    create_command: str,
    key: str | None = None,
    stored: Callable[[str, str, str | None], Sequence[store.StoredLike]] | None = None,
) -> BaselinePlan:
    """``mode``: auto, live, stored or a path; ``create_command``: the command line that would
    measure the baseline live and mark it stored (said when none is stored); ``key``: what the
    baseline record is stored under (default the workload's id; a capacity search's key);
    ``stored``: the results store's runs of a cluster, key and model (the session's index), read
    instead of every file of the results folder."""
    key = key or workload.id
    bspec = measurer.baseline_of(spec)
    if mode == "live" or measurer.cached(bspec, key) is not None:
        return BaselinePlan(live=bspec, source="live (measured in this session)")
    path = None if mode in ("auto", "stored") else Path(mode)
    if path is not None and path.is_file():
        return BaselinePlan(stored=_from_file(path, mode, key), source=f"file {path}")
    folder = path if path is not None else measurer.results_dir
    if path is not None and not path.is_dir():
        raise BaselineError(
            f"--pd-baseline={mode}: no such file or folder; use live, stored, a "
            "results JSON file, or a folder of them."
        )
    limit = max_age_s if path is None else math.inf
    runs: Sequence[store.StoredLike] = []
    if stored is not None and path is None:
        runs = [r for r in stored(bspec.label, key, bspec.model_name) if r.failure is None]
    elif folder:
        runs = store.find_runs(folder, bspec.label, key, bspec.model_name)
    pick = (
        _pick_launched_alike(runs, bspec, limit)
        if path is None
        else store.pick_baseline(runs, time.time(), limit)
    )
    if pick.run is not None:
        chosen = (
            pick.run if isinstance(pick.run, RunRecord) else _from_file(Path(str(pick.run.path)), mode, key)
        )
        return BaselinePlan(stored=chosen, source=f"stored ({pick.reason}: {pick.run.path})")
    if mode == "auto":
        return BaselinePlan(live=bspec, source=f"live (no usable stored run: {pick.reason})")
    raise BaselineError(
        f"no stored baseline for {spec.label}: its baseline cluster {bspec.label} has "
        f"{pick.reason} of workload {key} with model {bspec.model_name} in {folder}. "
        f"Create one by measuring it live and marking it as the baseline:\n"
        f"    {create_command}\n"
        "or run with --pd-baseline=live."
    )


def _pick_launched_alike(
    runs: Sequence[store.StoredLike], bspec: ClusterSpec, max_age_s: float
) -> store.BaselinePick[store.StoredLike]:
    """The results store's pick among the runs launched as ``bspec`` launches now; when none is,
    why (what the newest of the others was launched with)."""
    now = redact_commands(launch_identity(bspec))
    changed = {id(r): launch_changes(_launch_of(r), now) for r in runs}
    alike = [r for r in runs if not changed[id(r)]]
    pick = store.pick_baseline(alike, time.time(), max_age_s)
    if pick.run is not None or len(alike) == len(runs):
        return pick
    newest = next(changed[id(r)] for r in reversed(runs) if changed[id(r)])
    return store.BaselinePick(
        None,
        f"{len(runs) - len(alike)} stored run(s) launched otherwise than {bspec.source} launches "
        f"{bspec.label} now ({_listed(newest)})",
    )


def _launch_of(run: object) -> str | None:
    if isinstance(run, RunRecord):
        return run.cluster.launch
    facts = getattr(run, "facts", None)  # an index summary (store/summary.py: StoredRun)
    return facts.get(LAUNCH_FACT) if isinstance(facts, Mapping) else None


def _listed(changes: list[Change], most: int = 4) -> str:
    text = "; ".join(c.text for c in changes[:most])
    return text + (f"; and {len(changes) - most} more" if len(changes) > most else "")


def _from_file(path: Path, mode: str, key: str) -> RunRecord:
    try:
        record = store.load_result(path)
    except (OSError, ValueError) as exc:
        raise BaselineError(f"--pd-baseline={mode}: cannot read that results file: {exc}") from None
    if record.key != key:
        raise BaselineError(
            f"--pd-baseline={mode} holds workload {record.key!r}, but this "
            f"test runs {key!r}; give a results file of the same workload (or a "
            "folder of results to search)."
        )
    return record
