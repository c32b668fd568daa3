"""Errors a user can cause. Each carries a one-paragraph message: what, where, what to do."""

from __future__ import annotations


class PdError(Exception):
    """Base of every error pytest-pd reports without a traceback."""


class ClusterFileError(PdError):
    """A cluster file that cannot be read, parsed or validated."""


class HostError(PdError):
    """A host that cannot run, start or stop a process."""


class BringUpError(PdError):
    """A server or router that did not become healthy."""


class BaselineError(PdError):
    """A ratio threshold without a usable baseline."""
