"""The results store: one JSON file per measured run (cluster × workload), written atomically, and
the lookups on it (stored baselines, the previous run, the history of a cluster and workload).

Schema history (the reader accepts every version; missing keys get their defaults):
0 — no ``schema_version`` key; 1 — metrics, cluster, workload, environment, server_info;
2 — adds ``repeats`` (per-repeat metrics), ``baseline_mark``, ``requests`` (compressed records),
``telemetry``, ``session``, ``host`` and ISO start/end times; 3 — adds ``failure`` (null for a run
that completed; else stage, kind, message and the log tails of a run that did not) and ``source``
("suite", or "bench" for ``pytest-pd bench`` runs).
"""

from __future__ import annotations

import base64
import contextlib
import glob
import gzip
import json
import math
import os
import re
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_pd.workload.metrics import run_problems

SCHEMA_VERSION = 3
REQUESTS_ENCODING = "gzip+base64+json"


def result_filename(cluster: str, workload_id: str, when: float) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when))
    return f"{stamp}-{cluster}-{workload_id}.json"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _dump(payload: dict[str, Any]) -> str:
    return json.dumps(payload, indent=2, sort_keys=False, default=str, allow_nan=True) + "\n"


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


def write_json_atomic(path: Path, payload: dict[str, Any]) -> Path:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``: readers
    (and concurrent writers: two CI jobs, xdist workers) never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _write_temp(path.parent, path.name, _dump(payload))
    try:
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_result(results_dir: Path, payload: dict[str, Any]) -> Path:
    """Store one run under a fresh name; never overwrites a file, even when two sessions store a
    run of the same cluster and workload in the same second (the complete file is hard-linked
    into place, which fails instead of replacing; the loser takes the next suffix)."""
    results_dir.mkdir(parents=True, exist_ok=True)
    name = result_filename(payload["cluster"]["name"], payload["workload"]["id"], payload["started_at"])
    tmp = _write_temp(results_dir, name, _dump({"schema_version": SCHEMA_VERSION, **payload}))
    try:
        for n in range(10_000):
            path = results_dir / (name if n == 0 else name.replace(".json", f"-{n}.json"))
            try:
                os.link(tmp, path)
                return path
            except FileExistsError:
                continue
            except OSError:  # no hard links here (some network filesystems): best effort
                if not path.exists():
                    os.replace(tmp, path)
                    return path
        raise OSError(f"no free result file name for {name} in {results_dir}")
    finally:
        Path(tmp).unlink(missing_ok=True)


def load_result(path: Path) -> dict[str, Any]:
    """A stored run, normalised to the current schema (older files get defaults)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a results file (top level is not an object)")
    data.setdefault("schema_version", 0)
    data.setdefault("repeats", [])
    data.setdefault("baseline_mark", False)
    data.setdefault("requests", None)
    data.setdefault("telemetry", None)
    data.setdefault("model", {})
    data.setdefault("environment", {})
    data.setdefault("simulated", None)
    data.setdefault("failure", None)
    data["metrics"] = {k: (math.nan if v is None else v) for k, v in data.get("metrics", {}).items()}
    data["path"] = str(path)
    return data


# ---------------------------------------------------------------------------- per-request records


def encode_requests(run: dict[str, Any]) -> dict[str, Any]:
    """A run's per-request records (``RunResult.to_dict()``), compressed for the results file."""
    raw = json.dumps(run, separators=(",", ":"), default=str).encode()
    return {
        "encoding": REQUESTS_ENCODING,
        "count": len(run.get("records", [])),
        "data": base64.b64encode(gzip.compress(raw, 6)).decode("ascii"),
    }


def decode_requests(block: dict[str, Any] | None) -> dict[str, Any] | None:
    """Inverse of :func:`encode_requests`; None when the file holds no records."""
    if not block or block.get("encoding") != REQUESTS_ENCODING:
        return None
    return json.loads(gzip.decompress(base64.b64decode(block["data"])))


# ---------------------------------------------------------------------------- lookups


def iter_results(results_dir: Path, pattern: str = "*.json") -> Iterable[dict[str, Any]]:
    """Every readable result in the store (whose file name matches ``pattern``); files that
    cannot be read (foreign JSON, a file cut short by a full disk) are skipped, never fatal."""
    if not results_dir.is_dir():
        return
    for path in sorted(results_dir.glob(pattern)):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            data = load_result(path)
            if isinstance(data.get("cluster"), dict) and isinstance(data.get("workload"), dict):
                yield data


def find_runs(
    results_dir: Path,
    cluster: str,
    workload_id: str,
    model: str | None = None,
    *,
    include_failed: bool = False,
) -> list[dict[str, Any]]:
    """Stored runs of ``cluster`` on ``workload_id`` (and ``model``, when given), oldest first;
    runs that did not complete (a ``failure`` record) only with ``include_failed``; ad hoc
    ``pytest-pd bench`` runs never."""
    # file names hold cluster and workload (result_filename): read only those files
    pattern = glob.escape(f"-{cluster}-{workload_id}")
    runs = [
        d
        for d in iter_results(results_dir, f"*{pattern}*.json")
        if d["cluster"].get("name") == cluster
        and d["workload"].get("id") == workload_id
        and (model is None or d["model"].get("name") == model)
        and (include_failed or not d.get("failure"))
        and d.get("source") != "bench"
    ]
    return sorted(runs, key=lambda d: float(d.get("started_at") or 0.0))


def usable(run: dict[str, Any], max_mismatch_share: float = 0.0) -> bool:
    """A run sound enough to compare with: the same rule that judges a live run."""
    if run.get("failure"):
        return False
    return not run_problems(run.get("metrics") or {}, max_mismatch_share)


@dataclass(frozen=True)
class BaselinePick:
    run: dict[str, Any] | None
    reason: str  # why this one, or why none


def pick_baseline(runs: list[dict[str, Any]], now: float, max_age_s: float) -> BaselinePick:
    """The stored run to use as a baseline: the newest run marked with ``--pd-save-baseline``,
    else the newest sound run; either only if younger than ``max_age_s``. Pure."""
    sound = [r for r in runs if usable(r)]
    if not sound:
        why = "no stored run" if not runs else f"{len(runs)} stored run(s), none without failures"
        return BaselinePick(None, why)
    marked = [r for r in sound if r.get("baseline_mark")]
    best = (marked or sound)[-1]
    age = now - float(best.get("started_at") or 0.0)
    if age > max_age_s:
        return BaselinePick(
            None,
            f"the newest {'marked ' if marked else ''}run ({best['path']}) is "
            f"{format_age(age)} old, older than the maximum age "
            f"{format_age(max_age_s)} (--pd-baseline-max-age)",
        )
    return BaselinePick(best, "marked baseline" if marked else "newest stored run")


def previous_run(runs: list[dict[str, Any]], session: str | None, before: float) -> dict[str, Any] | None:
    """The newest run started before ``before`` that is not from this session."""
    older = [
        r
        for r in runs
        if float(r.get("started_at") or 0.0) < before and (session is None or r.get("session") != session)
    ]
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
