"""What a nightly history adds to one pytest session, before and after the results index: the
same session (a simulated cluster, the seed workload at speedup 100, one test with the history
verdict on) against an empty results folder, a store of 14 nights and one of two years
(``history_scale.build``: N nights × 3 clusters × 2 workloads, real-sized files), run with this
tree's code ("after": the SQLite index, built by the first session, cold, and found by the
next, warm) and with the code of ``--before`` (a git revision, checked out in a temporary
worktree and put first on PYTHONPATH). Prints wall time and peak RSS of each pytest process
(``/usr/bin/time``); nothing is asserted.

    .venv/bin/python benchmarks/history_session.py [--before b015c75] [--nights 730]   # ~5 min
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from history_scale import CLUSTERS, build  # noqa: E402

SUITE = """
import pytest
from pytest_pd import Workload

SEED = Workload(input_len=6000, output_len=1000, concurrency=16, num_requests=32)

@pytest.mark.parametrize("pd_workload", [SEED], ids=lambda w: w.id)
def test_nightly(pd_run):
    assert pd_run.candidate.metrics["completed"] == 32
"""


def cluster_file(folder: Path) -> str:
    """The shipped sim-tp8, under the store's first cluster name, at speedup 100."""
    data = yaml.safe_load((REPO / "clusters" / "sim-tp8.yaml").read_text())
    name = CLUSTERS[0]
    data.update(name=name, baseline=None)
    data["sim"] = {**data.get("sim", {}), "speedup": 100}
    data["model"]["path"] = str(REPO / "clusters" / "models" / "sim-tiny")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return name


def session(work: Path, clusters: Path, name: str, results: Path, code: Path | None) -> tuple[float, int]:
    """(wall seconds, peak RSS MB) of one pytest session."""
    env = dict(os.environ)
    if code is not None:
        env["PYTHONPATH"] = str(code)
    argv = [
        "/usr/bin/time", "-f", "%e %M", sys.executable, "-m", "pytest", str(work / "test_nightly.py"),
        f"--cluster={name}", f"--cluster-dir={clusters}", f"--pd-results-dir={results}",
        f"--pd-run-dir={work / 'runs'}", f"--html={work / 'report.html'}", "-p", "no:cacheprovider", "-q",
    ]  # fmt: skip
    done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        sys.exit(f"session failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    wall, rss_kb = done.stderr.strip().splitlines()[-1].split()
    return float(wall), int(rss_kb) // 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", default="b015c75", help="git revision before the index")
    parser.add_argument("--nights", type=int, default=730)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pd-history-session-") as tmp:
        root = Path(tmp)
        (root / "test_nightly.py").write_text(SUITE)
        name = cluster_file(root / "clusters")
        stores = {}
        for label, nights in (("empty", 0), ("14 nights", 14), (f"{args.nights} nights", args.nights)):
            stores[label] = root / f"store-{nights}"
            stores[label].mkdir()
            size = build(stores[label], nights, 3, 2, 32, 0) if nights else 0
            print(f"{label}: {nights} nights × 3 clusters × 2 workloads, {size / 1e6:.0f} MB")
        before = root / "before"
        subprocess.run(["git", "worktree", "add", "--detach", str(before), args.before], cwd=REPO,
                       check=True, capture_output=True)  # fmt: skip
        rows = []
        try:
            for code_label, code in ((f"before ({args.before})", before), ("after (index)", None)):
                for label, source in stores.items():
                    folder = root / f"{code is None}-{source.name}"
                    shutil.copytree(source, folder)
                    runs = ("cold", "warm") if code is None and "nights" in label else ("",)
                    for kind in runs:  # a second session finds the index the first one built
                        wall, rss = session(root, root / "clusters", name, folder, code)
                        rows.append((code_label, label, kind, wall, rss))
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(before)], cwd=REPO, capture_output=True
            )
    print(f"\n{'code':<22}{'results store':<15}{'index':<7}{'wall s':>8}{'peak RSS MB':>13}")
    for code_label, label, kind, wall, rss in rows:
        print(f"{code_label:<22}{label:<15}{kind:<7}{wall:>8.1f}{rss:>13d}")


if __name__ == "__main__":
    main()
