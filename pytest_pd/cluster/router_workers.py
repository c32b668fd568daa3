"""Does the router see every worker of the cluster file, registered in its role and healthy?

Read from the router's ``/workers`` (``{"workers": [{"worker_type", "url", "is_healthy", …}],
"total", "stats"}``, the same shape for every router kind). ``/readiness`` alone answers 200 as soon
as the router can route at all (one prefill and one decode), which says nothing of an xPyD
cluster's other workers. :func:`check_workers` is pure; :func:`probe` adds the GET.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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


def probe(workers_url: str, expected: Sequence[tuple[str, str]], timeout: float = 5.0) -> WorkersView:
    """GET the router's ``/workers`` and check it against ``expected``."""
    return check_workers(get_json(workers_url, timeout=timeout), expected)
