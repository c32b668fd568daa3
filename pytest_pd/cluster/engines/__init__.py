"""Engines: what serves the model on each prefill and decode host (SGLang, the simulator, …).

An engine is found by the cluster file's ``engine:`` name among the objects registered under the
``pytest_pd.engines`` entry-point group (pyproject.toml). Entry points keep the cluster core from
importing any engine's package (the simulator's included) and make a new engine one module plus one
entry-point line. Each is loaded only when a cluster file names it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from pytest_pd.cluster.safe_yaml import Loc
    from pytest_pd.cluster.spec import ClusterSpec, ServerSpec
    from pytest_pd.ttft_breakdown import ServerTimes

Rows = Mapping[str, Mapping[str, float]]
"""Each worker's metrics over a run (:func:`pytest_pd.prometheus.server_summary`)."""

GROUP = "pytest_pd.engines"


@dataclass
class ImportedServer:
    """One server command line read back into a cluster file's terms (``pytest-pd import``):
    ``role`` (prefill or decode), the model, the address it listens on, its node of a multi-node
    server, the server-entry fields that render its flags, and the rest of its arguments."""

    role: str
    fields: dict[str, Any]
    extra_args: list[str]
    model_path: str | None = None
    host: str | None = None
    nnodes: int = 1
    node_rank: int = 0
    newest_version: str | None = None  # the newest engine version taking every flag (None: any)


class Engine(Protocol):
    """What pytest-pd asks of an engine; everything it knows of one (flags, endpoints, metric
    names) is behind these members, in the engine's own module."""

    name: str  # the cluster file's ``engine:`` value
    server_module: str  # run as ``python -m MODULE`` on every prefill and decode node
    distribution: str  # the PyPI distribution that provides it (what `pytest-pd doctor` names)
    image: str  # the container image `pytest-pd manifests` runs it in unless told otherwise
    # the flags a pod rewrites, by role: "bind" (the address it listens on), "first_gpu",
    # "node_rank", "dist_init_addr" (a multi-node server's rendezvous HOST:PORT)
    pod_flags: Mapping[str, str]
    options_key: str | None  # the cluster-file block holding its own options (``sim:``), if any
    # Python source run as ``python -c SOURCE JSON`` on each host before bring-up: JSON is a list of
    # command lines (what follows ``-m MODULE``); it prints a JSON list, per command line, of the
    # arguments its parser does not accept. None: the flags are not checked (cluster/engine_check.py)
    flags_probe: str | None
    # reads one server command line (what follows ``-m MODULE``) back into cluster-file fields
    # (``pytest-pd import``); None: the engine's commands cannot be imported
    server_reader: Callable[[Sequence[str]], ImportedServer] | None
    simulated: bool  # runs no real model: no GPU to sample, results stand for another cluster
    apis: tuple[str, ...]  # the workload APIs it serves (generate, completions, chat), preferred first

    # ---------------------------------------------------------------- the cluster file
    def server_argv(
        self,
        spec: ClusterSpec,
        role: Literal["prefill", "decode"],
        server: ServerSpec,
        rank: int,
        *,
        python: str,
    ) -> list[str]:
        """The command line of one node (``rank``) of a server entry (defaults merged in)."""
        ...

    def uses_gpus(self, argv: Sequence[str]) -> bool:
        """A server started with ``argv`` needs GPUs on its host (what `pytest-pd doctor` checks)."""
        ...

    def exports_metrics(self, server: ServerSpec) -> bool:
        """The server serves Prometheus ``/metrics`` as the entry configures it."""
        ...

    def server_args(self, options: Mapping[str, Any]) -> list[str]:
        """Extra server arguments rendered from the engine's options block."""
        ...

    def option_problems(self, options: Mapping[str, Any]) -> list[tuple[str, str]]:
        """(key, what is wrong) for each bad entry of one options block."""
        ...

    def read_option_files(self, options: dict[str, Any], folder: Path) -> list[tuple[str, str]]:
        """Replace, in place, entries of one options block that name files (relative to
        ``folder``, the cluster file's) by what the files hold; (key, what is wrong) for each that
        cannot be read."""
        ...

    def time_scale(self, options: Mapping[str, Any]) -> float:
        """How many times faster than the cluster it stands for the engine runs (1: real time)."""
        ...

    def spec_problems(self, spec: ClusterSpec) -> list[tuple[Loc, str]]:
        """The engine's own rules of a cluster file, as (field, what is wrong)."""
        ...

    # ---------------------------------------------------------------- endpoints (on a server's URL)
    health_path: str  # 200 once the server serves requests (gated on at bring-up)
    server_info_path: str | None  # JSON facts of the running server (its version); None: none
    flush_cache: tuple[str, str] | None  # (method, path) that empties the prefix cache; None: none

    def version_of(self, info: Mapping[str, Any]) -> str | None:
        """The engine and its version (``sglang 0.5.23``) in what ``server_info_path`` answered."""
        ...

    # ---------------------------------------------------------------- the server's /metrics
    gauges: Mapping[str, str]  # "running", "queued" → the gauge's sample name (charted per worker)

    def server_times(self, rows: Rows) -> ServerTimes | None:
        """Where the servers say the time to first token went (None: the engine exports no such
        metrics; a part it cannot tell is None with the reason)."""
        ...

    def prefix_cache_hit_rate(self, rows: Rows) -> float | None:
        """The share of prompt tokens found in the prefix cache over a run (None: not exported)."""
        ...


class NoOptionsBlock:
    """What an engine without an options block of its own says of one (SGLang's and vLLM's every
    option is a launch flag): nothing to render, check or read; real time."""

    options_key: str | None = None

    def server_args(self, options: Mapping[str, Any]) -> list[str]:
        return []

    def option_problems(self, options: Mapping[str, Any]) -> list[tuple[str, str]]:
        return []

    def read_option_files(self, options: dict[str, Any], folder: Path) -> list[tuple[str, str]]:
        return []

    def time_scale(self, options: Mapping[str, Any]) -> float:
        return 1.0


@functools.cache
def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def names() -> list[str]:
    """The registered engine names, sorted."""
    return sorted(_entry_points())


@functools.cache
def engine(name: str) -> Engine:
    try:
        found = _entry_points()[name]
    except KeyError:
        raise ValueError(
            f"unknown engine {name!r}; registered: {', '.join(names()) or 'none'} "
            f"(entry-point group {GROUP}; reinstall pytest-pd if it is empty)"
        ) from None
    return found.load()


def find(name: str | None) -> Engine | None:
    """The engine registered as ``name``; None for no name or one not installed here (a stored
    record of an engine this machine does not have)."""
    return engine(name) if name in _entry_points() else None


def engine_of(spec: ClusterSpec) -> Engine:
    return engine(spec.engine)


def owner_of(options_key: str) -> str | None:
    """The engine whose options block is ``options_key`` (for 'that block needs engine: X')."""
    return next((n for n in names() if engine(n).options_key == options_key), None)


def options(spec: ClusterSpec, server: ServerSpec | None = None) -> dict[str, Any]:
    """The engine's options for one server (the file's top-level block, then the server's, which
    holds ``server_defaults``'), or the top-level block alone."""
    key = engine_of(spec).options_key
    if key is None:
        return {}
    return {
        **spec.engine_options.get(key, {}),
        **(server.engine_options.get(key, {}) if server is not None else {}),
    }


def time_scale(spec: ClusterSpec) -> float:
    """How many times faster than real time the cluster runs (1 for real hardware)."""
    return engine_of(spec).time_scale(options(spec))
