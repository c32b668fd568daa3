"""Hostile cluster files: for each class (alias bombs, deep nesting, huge scalars and files, long
integers, binary junk, paths that are not files), the time to the error and the peak memory of a
fresh process that loads it.

    .venv/bin/python benchmarks/hostile_cluster_files.py       # figures printed, nothing asserted

The classes are those of ``tests/integration/test_bad_clusters.py`` (generated there, plus the stored
``tests/data/bad_clusters/hostile_*.yaml``); a good cluster file comes first for comparison. Each
load runs in its own interpreter (``load_cluster`` only, address space capped at 3 GiB); the time
is that of ``load_cluster`` in the child, the memory the child's peak RSS, imports included.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.hostile_files import HOSTILE, REPO, Hostile, child_prefix, load_in_child  # noqa: E402

GOOD = Hostile(
    "(good file: clusters/h20-pp2.yaml)", lambda folder: str(REPO / "clusters" / "h20-pp2.yaml"), ""
)


def measure(case: Hostile, repeats: int) -> tuple[float, float, str] | None:
    """Slowest seconds, largest peak RSS (MB) and the message over ``repeats`` loads; None when
    this machine cannot run the case."""
    prefix = child_prefix(case)
    if prefix is None:
        return None
    seconds, peak, message = 0.0, 0.0, ""
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as folder:
            argument = case.make(Path(folder))
            outcome = load_in_child(argument, Path(folder), prefix)
            message = (outcome["message"] or "(loaded)").replace(argument, "FILE")
        seconds = max(seconds, outcome["seconds"])
        peak = max(peak, outcome["peak_rss_mb"])
    return seconds, peak, message


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=1, help="loads per class; the worst is shown")
    ap.add_argument("--width", type=int, default=90, help="characters of the message shown")
    args = ap.parse_args()

    print(f"{'class':<30} {'to error s':>10} {'peak RSS MB':>11}  message (file shown as FILE)")
    worst_s = worst_mb = 0.0
    for case in [GOOD, *HOSTILE]:
        row = measure(case, args.repeats)
        if row is None:
            print(f"{case.name:<30} {'-':>10} {'-':>11}  skipped: needs a non-root user or setpriv")
            continue
        seconds, peak, message = row
        worst_s, worst_mb = max(worst_s, seconds), max(worst_mb, peak)
        shown = message if len(message) <= args.width else message[: args.width - 1] + "…"
        print(f"{case.name:<30} {seconds:>10.3f} {peak:>11.1f}  {shown}")
    print(
        f"\nslowest {worst_s:.3f} s, largest peak RSS {worst_mb:.1f} MB "
        f"({len(HOSTILE)} hostile classes and the good file)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
