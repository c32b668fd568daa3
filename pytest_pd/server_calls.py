"""The calls a measurement makes to a running cluster's servers, through their engine's endpoints:
each server's facts (its version, its settings) and the prefix-cache flush after the warm-up."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pytest_pd.cluster import engines
from pytest_pd.cluster.spec import ClusterSpec
from pytest_pd.cluster.topology import Topology
from pytest_pd.http_get import get_json, get_status


def server_info(spec: ClusterSpec, topology: Topology) -> dict[str, dict[str, Any]]:
    """What each server's own facts endpoint answers (version, settings), by process name."""
    path = engines.engine_of(spec).server_info_path
    if path is None:
        return {}
    return {cmd.name: get_json(f"{cmd.base_url}{path}") for cmd in topology.plan if cmd.base_url}


def flush_caches(spec: ClusterSpec, topology: Topology, say: Callable[[str], None]) -> None:
    """Empty every server's prefix cache (the engine's flush endpoint) after the warm-up, so that
    each repeat starts cold and no measured request finds a warm-up prompt cached; a server that
    refuses is named, the run goes on."""
    flush = engines.engine_of(spec).flush_cache
    if flush is None:
        return
    method, path = flush
    for cmd in topology.plan:
        if cmd.base_url:
            status = get_status(f"{cmd.base_url}{path}", timeout=10.0, method=method)
            if status != 200:
                say(f"{spec.label}: {cmd.name}: prefix cache not flushed ({method} {path}: {status})")
