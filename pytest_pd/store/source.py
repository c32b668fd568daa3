"""Where the history reads stored runs from: the results index (SQLite in the results folder, or
a team's PostgreSQL), brought up to date once per session and told of every run saved after. When
the index cannot be used (a PostgreSQL server down, a read-only folder) the session says why once
and reads the JSON files instead: the files are the record of truth, so nothing is lost, only time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_pd.errors import PdError
from pytest_pd.record import RunRecord
from pytest_pd.results import find_runs, iter_results, load_result
from pytest_pd.store.summary import StoredRun, summarize

if TYPE_CHECKING:
    from pytest_pd.store.index import ResultsIndex

# SQLAlchemy (and the database drivers) load when the index is first opened, not when pytest or
# the CLI starts: every pytest run and every `pytest-pd` command would pay ~0.2 s for it.
# StoreError, the index's one error type, is a PdError.


def stored_runs(
    results_dir: Path,
    url: str | None = None,
    origin: str | None = None,
    *,
    sync: bool = True,
    warn: Callable[[str], None] | None = None,
) -> list[StoredRun]:
    """Every suite run of the store, oldest first (``pytest-pd history``). ``sync``: bring the
    index up to date with ``results_dir`` first (off: read a shared index as it is). A local
    index that cannot be used (a folder we may not write) is said through ``warn`` and the files
    are read instead; a shared one's error is raised (the command says it and exits 2)."""
    from pytest_pd.store.index import ResultsIndex

    if url is None and not results_dir.is_dir():
        return []
    try:
        with ResultsIndex.open(results_dir, url, origin=origin) as index:
            if sync:
                index.sync()
            return index.runs()
    except Exception as exc:
        if url is not None:
            raise
        if warn is not None:
            warn(f"{_why(exc)} Reading the JSON files in {results_dir} instead.")
    runs = [summarize(r) for r in iter_results(results_dir) if r.source == "suite"]
    return sorted(runs, key=lambda r: r.started_at)


def on_this_machine(runs: list[StoredRun]) -> list[StoredRun]:
    """The runs whose files are here (a shared index also lists other runners' runs)."""
    return [r for r in runs if Path(r.path).is_file()]


def _why(exc: BaseException) -> str:
    """A StoreError's own paragraph; anything else (a folder we may not read) named plainly."""
    if isinstance(exc, PdError):
        return str(exc)
    return f"the results index could not be used ({type(exc).__name__}: {exc})."


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
                self._index = ResultsIndex.open(self.results_dir, self.url, origin=self.origin)
                self._index.sync()
            except Exception as exc:  # noqa: BLE001 (the index is never worth failing a session for)
                self._give_up(_why(exc))
        return self._index

    def _give_up(self, why: str) -> None:
        self._broken = why
        if self._index is not None:
            with contextlib.suppress(Exception):
                self._index.close()
            self._index = None
        self.warn(f"{why} This session reads the history from the JSON files in {self.results_dir}.")

    def runs(self, cluster: str, key: str, model: str | None) -> list[StoredRun]:
        """Stored suite runs of ``cluster`` and ``key`` (failed ones included), oldest first."""
        index = self._open()
        if index is not None:
            try:
                return index.runs(cluster, key, model)
            except Exception as exc:  # noqa: BLE001
                self._give_up(_why(exc))
        found = find_runs(self.results_dir, cluster, key, model, include_failed=True)
        return [summarize(r) for r in found]

    def local_runs(self, cluster: str, key: str, model: str | None) -> list[StoredRun]:
        """The stored runs whose files are on this machine: what a stored baseline may be taken
        from."""
        return on_this_machine(self.runs(cluster, key, model))

    def saved(self, record: RunRecord, path: Path) -> None:
        """``record`` was just written to ``path``: index it (a failure is said, never fatal)."""
        index = self._open()
        if index is None:
            return
        try:
            index.add(record, path)
        except Exception as exc:  # noqa: BLE001
            self._give_up(f"{_why(exc)} (the run itself is in {path})")

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
