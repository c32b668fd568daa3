"""Does the router see every worker of the cluster file, registered in its role and healthy?

Read from the router's ``/workers`` (``{"workers": [{"worker_type", "url", "is_healthy", …}],
"total", "stats"}``, the same shape for every router kind). ``/readiness`` alone answers 200 as soon
as the router can route at all (one prefill and one decode), which says nothing of an xPyD
cluster's other workers. :func:`check_workers` is pure; :func:`probe` adds the GET.

A router that routes by its workers' polled loads (smg) also lists, at ``/loads``, the load it
last polled from each; until its first poll of every worker it scores an unpolled one against the
polled ones so that requests pile on the polled ones (one side's requests 52 to 13 in a 2P2D run
started right after bring-up). :func:`check_loads` asks that every worker be listed there.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pytest_pd.http_get import get_json

ROLES = ("prefill", "decode")


@dataclass(frozen=True)
class WorkersView:
    ok: bool  # every expected worker registered in its role and healthy
    text: str  # "router sees 1 of 1 prefill and 0 of 1 decode workers healthy: http://… is_healthy=false"


def _key(url: str) -> str:
    return url.rstrip("/")


def check_workers(payload: Mapping[str, Any], expected: Sequence[tuple[str, str]]) -> WorkersView:
    """``payload``: the router's ``/workers`` JSON (or :func:`~pytest_pd.http_get.get_json`'s
    ``{"error": …}``); ``expected``: (role, URL) of every worker the router was started with."""
    listed = payload.get("workers")
    if not isinstance(listed, list):
        why = payload.get("error") or f"no 'workers' list in {json.dumps(payload)[:200]}"
        return WorkersView(False, f"router's worker list could not be read ({why})")
    found = {_key(str(w.get("url"))): w for w in listed if isinstance(w, Mapping)}
    healthy = dict.fromkeys(ROLES, 0)
    wanted = dict.fromkeys(ROLES, 0)
    problems = []
    for role, url in expected:
        wanted[role] = wanted.get(role, 0) + 1
        entry = found.get(_key(url))
        if entry is None:
            problems.append(f"{url} ({role}) is not registered")
        elif entry.get("worker_type") != role:
            problems.append(f"{url} is registered as {entry.get('worker_type')!r}, not {role}")
        elif entry.get("is_healthy") is not True:
            problems.append(f"{url} ({role}) is_healthy={json.dumps(entry.get('is_healthy'))}")
        else:
            healthy[role] = healthy.get(role, 0) + 1
    counts = " and ".join(f"{healthy[r]} of {wanted[r]} {r}" for r in wanted)
    text = f"router sees {counts} workers healthy"
    return WorkersView(not problems, text + (": " + "; ".join(problems) if problems else ""))


def check_loads(payload: Mapping[str, Any], expected: Sequence[tuple[str, str]]) -> WorkersView:
    """``payload``: the router's ``/loads`` JSON (``{"loads": [{"worker": URL, …}, …]}``): has it
    polled the load of every worker in ``expected``?"""
    listed = payload.get("loads")
    if not isinstance(listed, list):
        why = payload.get("error") or f"no 'loads' list in {json.dumps(payload)[:200]}"
        return WorkersView(False, f"router's polled loads could not be read ({why})")
    polled = {_key(str(w.get("worker"))) for w in listed if isinstance(w, Mapping)}
    missing = [f"{url} ({role})" for role, url in expected if _key(url) not in polled]
    text = f"router has polled the load of {len(expected) - len(missing)} of {len(expected)} workers"
    return WorkersView(not missing, text + (": not yet " + ", ".join(missing) if missing else ""))


def probe(workers_url: str, expected: Sequence[tuple[str, str]], timeout: float = 5.0) -> WorkersView:
    """GET the router's ``/workers`` and check it against ``expected``."""
    return check_workers(get_json(workers_url, timeout=timeout), expected)


class PolledRouter(Protocol):
    """The router's launch command, as far as :func:`await_loads` reads it."""

    @property
    def loads_url(self) -> str | None: ...
    @property
    def expected_workers(self) -> tuple[tuple[str, str], ...]: ...
    @property
    def loads_wait_s(self) -> float: ...


def await_loads(router: PolledRouter, cancel: threading.Event) -> str:
    """Wait (at most ``router.loads_wait_s``) until the router's ``/loads`` lists every worker it
    was started with; what it came to, for the log."""
    loads_url, within_s = str(router.loads_url), router.loads_wait_s
    start = time.monotonic()
    while True:
        view = check_loads(get_json(loads_url, timeout=5.0), router.expected_workers)
        waited = time.monotonic() - start
        if view.ok:
            return f"{view.text} after {waited:.1f} s"
        if waited >= within_s or cancel.wait(0.2):
            return (
                f"{view.text} after {waited:.1f} s (from {loads_url}); until it polls them its "
                "first requests may pile on the workers it has polled"
            )
