"""Per-run directories: one folder per cluster bring-up, holding its logs and pid files."""

from __future__ import annotations

import time
from pathlib import Path


def new_run_dir(base: Path, label: str) -> Path:
    """A fresh folder ``base/<UTC time>-<label>[-N]``, created atomically (safe for parallel runs)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    base.mkdir(parents=True, exist_ok=True)
    for n in range(1000):
        path = base / (f"{stamp}-{label}" + (f"-{n}" if n else ""))
        try:
            path.mkdir()
            return path.resolve()
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a run directory under {base}")


def log_files(run_dir: Path) -> list[Path]:
    """The process logs of a run directory, the servers' first, the router's last."""
    return sorted(run_dir.glob("*.log"), key=lambda p: (p.stem == "router", p.stem))
