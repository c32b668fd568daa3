"""A process that saves and indexes runs as a session of its own would (for the tests that
write one results index from two processes at once)."""

from __future__ import annotations

from pathlib import Path

from pytest_pd import results as store
from pytest_pd.record import ClusterInfo, ModelInfo, RunRecord
from pytest_pd.store.index import ResultsIndex
from pytest_pd.workload.spec import Workload

W = Workload(input_len=10, output_len=5, concurrency=1, num_requests=2)


def write_and_index(folder: str, url: str | None, tag: str, n: int, start: float) -> list[str]:
    """Save and index ``n`` runs of cluster ``c-TAG``, syncing every few; their file names."""
    saved = []
    with ResultsIndex.open(Path(folder), url) as index:
        for i in range(n):
            rec = RunRecord(
                cluster=ClusterInfo(name=f"c-{tag}"),
                workload=W,
                model=ModelInfo(name="m"),
                started_at=start + i,
                session=tag,
                metrics={"completed": 2, "failed": 0, "mean_ttft_ms": 10.0 + i},
            )
            path = store.save_result(Path(folder), rec, with_requests=False)
            index.add(rec, path)
            saved.append(str(path))
            if i % 5 == 4:
                index.sync()
    return saved
