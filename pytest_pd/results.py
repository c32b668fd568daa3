"""The results store: one JSON file per measured run (cluster × workload), written atomically."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1


def result_filename(cluster: str, workload_id: str, when: float) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when))
    return f"{stamp}-{cluster}-{workload_id}.json"


def write_json_atomic(path: Path, payload: dict[str, Any]) -> Path:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``: readers
    (and concurrent writers: two CI jobs, xdist workers) never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2, sort_keys=False, default=str, allow_nan=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_result(results_dir: Path, payload: dict[str, Any]) -> Path:
    """Store one run; never overwrites an earlier file (a suffix is added on a name clash)."""
    name = result_filename(payload["cluster"]["name"], payload["workload"]["id"],
                           payload["started_at"])
    path = results_dir / name
    n = 1
    while path.exists():
        path = results_dir / name.replace(".json", f"-{n}.json")
        n += 1
    return write_json_atomic(path, {"schema_version": SCHEMA_VERSION, **payload})


def load_result(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    data.setdefault("schema_version", 0)
    return data
