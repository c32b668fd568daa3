"""Where the history reads stored runs from: the results index (SQLite in the results folder, or
a team's PostgreSQL), brought up to date once per session and told of every run saved after. When
the index cannot be used (a PostgreSQL server down, a read-only folder) the session says why once
and reads the JSON files instead: the files are the record of truth, so nothing is lost, only time.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_pd.errors import PdError
from pytest_pd.record import RunRecord
from pytest_pd.results import find_runs, load_result
from pytest_pd.store.summary import StoredRun, summarize

if TYPE_CHECKING:
    from pytest_pd.store.index import ResultsIndex

# SQLAlchemy (and the database drivers) load when the index is first opened, not when pytest or
# the CLI starts: every pytest run and every `pytest-pd` command would pay ~0.2 s for it.
# StoreError, the index's one error type, is a PdError.


def stored_runs(results_dir: Path, url: str | None = None, origin: str | None = None) -> list[StoredRun]:
    """Every suite run of the store, oldest first (``pytest-pd history``); a store error is
    raised (the command says it and exits 2)."""
    from pytest_pd.store.index import ResultsIndex

    if url is None and not results_dir.is_dir():
        return []
    with ResultsIndex.open(results_dir, url, origin=origin) as index:
        index.sync()
        return index.runs()


class RunSource:
    """A session's view of the results store: the index, else the files."""

    def __init__(
        self, results_dir: Path, url: str | None, warn: Callable[[str], None], origin: str | None = None
    ) -> None:
        self.results_dir = results_dir
        self.url = url
        self.origin = origin
        self.warn = warn
        self._index: ResultsIndex | None = None
        self._broken: str | None = None  # why the index is not used this session

    def _open(self) -> ResultsIndex | None:
        if self._index is None and self._broken is None:
            from pytest_pd.store.index import ResultsIndex

            try:
                index = ResultsIndex.open(self.results_dir, self.url, origin=self.origin)
                index.sync()
                self._index = index
            except PdError as exc:
                self._give_up(str(exc))
        return self._index

    def _give_up(self, why: str) -> None:
        self._broken = why
        if self._index is not None:
            self._index.close()
            self._index = None
        self.warn(f"{why} This session reads the history from the JSON files in {self.results_dir}.")

    def runs(self, cluster: str, key: str, model: str | None) -> list[StoredRun]:
        """Stored suite runs of ``cluster`` and ``key`` (failed ones included), oldest first."""
        index = self._open()
        if index is not None:
            try:
                return index.runs(cluster, key, model)
            except PdError as exc:
                self._give_up(str(exc))
        found = find_runs(self.results_dir, cluster, key, model, include_failed=True)
        return [summarize(r) for r in found]

    def local_runs(self, cluster: str, key: str, model: str | None) -> list[StoredRun]:
        """The stored runs whose files are on this machine (a shared index also lists other
        runners' runs): what a stored baseline may be taken from."""
        return [r for r in self.runs(cluster, key, model) if Path(r.path).is_file()]

    def saved(self, record: RunRecord, path: Path) -> None:
        """``record`` was just written to ``path``: index it (a failure is said, never fatal)."""
        index = self._open()
        if index is None:
            return
        try:
            index.add(record, path)
        except (PdError, ValueError) as exc:
            self._give_up(f"{exc} (the run itself is in {path})")

    def load(self, run: StoredRun) -> RunRecord | None:
        """The full record of a stored run, when its file is on this machine."""
        try:
            return load_result(Path(run.path))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index = None
