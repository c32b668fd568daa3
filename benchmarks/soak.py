"""Soak: the seed workload against sim-pp2 (real router) in a loop, watching for leaks.

Runs for --minutes (default 10) and reports, per iteration and overall: request errors, the RSS of
this process (client + harness run in it), its open file descriptors, and the RSS of the cluster's
processes. Targets: 0 errors, < 5 % RSS growth of the client/harness, no fd leak.

    python benchmarks/soak.py --minutes 10
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

from pytest_pd.cluster.signals import sigterm_as_interrupt
from pytest_pd.measure import Measurer
from pytest_pd.workload.spec import Workload

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sim_fidelity import REPO, write_cluster  # noqa: E402  (a sibling script)


def rss_kib(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def soak(measurer: Measurer, workload: Workload, minutes: float, rows: list[tuple]) -> None:
    """Run ``workload`` again and again for ``minutes``, a row per iteration into ``rows``."""
    spec = measurer.spec("sim-pp2")
    topology = measurer.up(spec)
    pids = [int(p["pid"]) for p in topology.processes()]
    deadline = time.monotonic() + minutes * 60
    i = 0
    while time.monotonic() < deadline:
        i += 1
        measurer.forget()  # measure again: a new run each iteration
        m = measurer.measure(spec, workload)
        rows.append(
            (
                i,
                m.metrics["completed"],
                m.metrics["failed"],
                rss_kib(),
                open_fds(),
                sum(rss_kib(p) for p in pids),
            )
        )
        print(
            f"iter {i:3d}: completed {rows[-1][1]}, failed {rows[-1][2]}, "
            f"harness RSS {rows[-1][3] / 1024:.1f} MiB, fds {rows[-1][4]}, "
            f"cluster RSS {rows[-1][5] / 1024:.1f} MiB",
            flush=True,
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--speedup", type=float, default=10.0)
    args = parser.parse_args()
    workload = Workload()  # the seed: 6000 in / 1000 out, concurrency 16, 32 requests
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_cluster(REPO / "clusters" / "sim-pp2.yaml", folder, args.speedup)
        data = yaml.safe_load((folder / "sim-pp2.yaml").read_text())
        data.pop("baseline", None)
        (folder / "sim-pp2.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        measurer = Measurer(folder, folder / "runs", None, say=lambda t: None)
        rows: list[tuple] = []
        try:  # Ctrl-C or SIGTERM stops early: the cluster goes, the figures so far are printed
            with sigterm_as_interrupt(), contextlib.suppress(KeyboardInterrupt):
                soak(measurer, workload, args.minutes, rows)
        finally:
            measurer.close()
    if not rows:
        print("no iteration completed")
        return 1
    errors = sum(r[2] for r in rows)
    first, last = rows[min(1, len(rows) - 1)], rows[-1]  # after the first iteration's warm-up
    growth = (last[3] - first[3]) / first[3] * 100
    cluster_growth = (last[5] - first[5]) / first[5] * 100
    print(
        f"\n{len(rows)} iterations in {args.minutes:g} min, {sum(r[1] for r in rows)} requests, "
        f"{errors} errors (target 0)"
    )
    print(
        f"harness+client RSS {first[3] / 1024:.1f} → {last[3] / 1024:.1f} MiB "
        f"({growth:+.1f} %, target < 5 %), from iteration 2 on"
    )
    print(f"open fds {first[4]} → {last[4]} (target: no growth)")
    print(f"cluster processes RSS {first[5] / 1024:.1f} → {last[5] / 1024:.1f} MiB ({cluster_growth:+.1f} %)")
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
