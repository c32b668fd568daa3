"""The results store: one JSON file per measured run (cluster × workload, a :class:`RunRecord`),
written atomically and never overwritten, and the lookups on it (stored baselines, the previous
run, the history of a cluster and workload). The schema and its versions: ``record.py``.
"""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import re
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from pytest_pd.record import RunRecord, migrate
from pytest_pd.workload.metrics import run_problems


def result_filename(cluster: str, workload_id: str, when: float) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when))
    return f"{stamp}-{cluster}-{workload_id}.json"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_temp(folder: Path, name: str, text: str) -> str:
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; results are for everyone to read
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def write_text_atomic(path: Path, text: str) -> Path:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``: readers
    (and concurrent writers: two CI jobs, xdist workers) never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _write_temp(path.parent, path.name, text)
    try:
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_result(results_dir: Path, record: RunRecord, *, with_requests: bool = True) -> Path:
    """Store one run under a fresh name; never overwrites a file, even when two sessions store a
    run of the same cluster and workload in the same second (the complete file is hard-linked
    into place, which fails instead of replacing; the loser takes the next suffix). Sets
    ``record.path``."""
    results_dir.mkdir(parents=True, exist_ok=True)
    name = result_filename(record.cluster.name, record.key, record.started_at)
    tmp = _write_temp(results_dir, name, record.to_json(with_requests=with_requests))
    try:
        for n in range(10_000):
            path = results_dir / (name if n == 0 else name.replace(".json", f"-{n}.json"))
            try:
                os.link(tmp, path)
                break
            except FileExistsError:
                continue
            except OSError:  # no hard links here (some network filesystems): best effort
                if not path.exists():
                    os.replace(tmp, path)
                    break
        else:
            raise OSError(f"no free result file name for {name} in {results_dir}")
    finally:
        Path(tmp).unlink(missing_ok=True)
    record.path = str(path)
    return path


def write_record(path: Path, record: RunRecord, *, with_requests: bool = True) -> Path:
    """Write one run to ``path`` (replacing it, atomically). Sets ``record.path``."""
    write_text_atomic(path, record.to_json(with_requests=with_requests))
    record.path = str(path)
    return path


def load_result(path: Path) -> RunRecord:
    """A stored run of any schema version, as the current record."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a results file (top level is not an object)")
    record = RunRecord.model_validate(migrate(data))
    record.path = str(path)
    return record


# ---------------------------------------------------------------------------- lookups


def iter_results(results_dir: Path, pattern: str = "*.json") -> Iterable[RunRecord]:
    """Every readable result in the store (whose file name matches ``pattern``); files that
    cannot be read (foreign JSON, a file cut short by a full disk) are skipped, never fatal."""
    if not results_dir.is_dir():
        return
    for path in sorted(results_dir.glob(pattern)):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            yield load_result(path)


def find_runs(
    results_dir: Path,
    cluster: str,
    workload_id: str,
    model: str | None = None,
    *,
    include_failed: bool = False,
) -> list[RunRecord]:
    """Stored runs of ``cluster`` on ``workload_id`` (a :attr:`RunRecord.key`: a workload's id, or
    a capacity search's key) (and ``model``, when given), oldest first;
    runs that did not complete (a ``failure`` record) only with ``include_failed``; ad hoc
    ``pytest-pd bench`` runs never."""
    # file names hold cluster and workload (result_filename): read only those files
    pattern = glob.escape(f"-{cluster}-{workload_id}")
    runs = [
        r
        for r in iter_results(results_dir, f"*{pattern}*.json")
        if r.cluster.name == cluster
        and r.key == workload_id
        and (model is None or r.model.name == model)
        and (include_failed or r.failure is None)
        and r.source != "bench"
    ]
    return sorted(runs, key=lambda r: r.started_at)


class StoredLike(Protocol):
    """A stored run as the baseline pick reads it: a :class:`RunRecord` or its index summary."""

    @property
    def failure(self) -> object: ...
    @property
    def metrics(self) -> Mapping[str, Any]: ...
    @property
    def baseline_mark(self) -> bool: ...
    @property
    def started_at(self) -> float: ...
    @property
    def path(self) -> str | None: ...


R = TypeVar("R", bound=StoredLike)


def usable(run: StoredLike, max_mismatch_share: float = 0.0) -> bool:
    """A run sound enough to compare with: the same rule that judges a live run."""
    return run.failure is None and not run_problems(run.metrics, max_mismatch_share)


@dataclass(frozen=True)
class BaselinePick(Generic[R]):
    run: R | None
    reason: str  # why this one, or why none


def pick_baseline(runs: Sequence[R], now: float, max_age_s: float) -> BaselinePick[R]:
    """The stored run to use as a baseline: the newest run marked with ``--pd-save-baseline``,
    else the newest sound run; either only if younger than ``max_age_s``. Pure."""
    sound = [r for r in runs if usable(r)]
    if not sound:
        why = "no stored run" if not runs else f"{len(runs)} stored run(s), none without failures"
        return BaselinePick(None, why)
    marked = [r for r in sound if r.baseline_mark]
    best = (marked or sound)[-1]
    age = now - best.started_at
    if age > max_age_s:
        return BaselinePick(
            None,
            f"the newest {'marked ' if marked else ''}run ({best.path}) is "
            f"{format_age(age)} old, older than the maximum age "
            f"{format_age(max_age_s)} (--pd-baseline-max-age)",
        )
    return BaselinePick(best, "marked baseline" if marked else "newest stored run")


class _Dated(Protocol):
    @property
    def started_at(self) -> float: ...
    @property
    def session(self) -> str | None: ...


D = TypeVar("D", bound=_Dated)


def previous_run(runs: Sequence[D], session: str | None, before: float) -> D | None:
    """The newest run started before ``before`` that is not from this session."""
    older = [r for r in runs if r.started_at < before and (session is None or r.session != session)]
    return older[-1] if older else None


_AGE = re.compile(r"^\s*(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>s|m|h|d|w)?\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> float:
    """'90s', '30m', '12h', '7d', '2w' (bare numbers are seconds); '0', 'inf' or 'none': no limit."""
    if text.strip().lower() in ("0", "inf", "none", "never"):
        return math.inf
    match = _AGE.match(text)
    if not match:
        raise ValueError(f"not an age: {text!r} (write e.g. 12h, 7d or 2w)")
    return float(match["n"]) * _UNITS[match["unit"] or "s"]


def format_age(seconds: float) -> str:
    if math.isinf(seconds):
        return "unlimited"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"
