"""Errors a user can cause. Each carries a one-paragraph message: what, where, what to do."""

from __future__ import annotations

from pytest_pd.failure import Failure


class PdError(Exception):
    """Base of every error pytest-pd reports without a traceback. ``failure``: the record of a
    failed bring-up or run (cluster, stage, message, run directory, log tails, results files),
    when the error stands for one."""

    def __init__(self, *args: object, failure: Failure | None = None) -> None:
        super().__init__(*args)
        self.failure = failure


class ClusterFileError(PdError):
    """A cluster file that cannot be read, parsed or validated."""


class HostError(PdError):
    """A host that cannot run, start or stop a process."""


class BringUpError(PdError):
    """A server or router that did not become healthy."""


class BaselineError(PdError):
    """A ratio threshold without a usable baseline."""


class PdStoreWarning(UserWarning):
    """The results index (SQLite or PostgreSQL) could not be used; the JSON files still were."""


class PdRegressionWarning(UserWarning):
    """An open regression in the stored series of a metric (--pd-history=warn)."""
