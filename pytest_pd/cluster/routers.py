"""Router kinds: which router program fronts the workers (the cluster file's ``router.kind``).

Everything that differs between the kinds lives in this one table; the rest of pytest-pd renders,
gates and scrapes every kind the same way. Both kinds shipped here take the same flags (smg is
sglang-router's successor, spun out as its own PyPI package) and serve the same ``/readiness``,
``/workers`` and Prometheus metric names; a kind that differs in more adds a field here.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT = "sglang-router"


@dataclass(frozen=True)
class RouterKind:
    name: str  # the cluster file's ``router.kind``
    package: str  # the PyPI distribution that provides it (pinned in pyproject.toml)
    # Run as ``PYTHON -m MODULE`` with the router host's interpreter, like the workers: the host's
    # ``python:`` (or this venv's for launcher: local) is the one place the cluster file says
    # which environment runs things, and a console script (``smg launch``) would depend on that
    # environment's bin/ being on the PATH of a non-login SSH shell.
    module: str
    readiness_path: str = "/readiness"  # 200 once the router can route (gated on at bring-up)
    workers_path: str = "/workers"  # the registered workers and their health (gated on after)
    # Prometheus families kept from the router's own metrics port (the rest — per-bucket
    # histograms, runtime internals, a row per endpoint × worker type — would swamp the report).
    metric_families: tuple[str, ...] = (
        "smg_router_requests_total",
        "smg_router_request_errors_total",
        "smg_http_requests_total",
        "smg_worker_health",
        "smg_worker_cb_state",
        "smg_worker_requests_active",
        "smg_worker_requests_total",
    )


KINDS: dict[str, RouterKind] = {
    "sglang-router": RouterKind(
        "sglang-router", package="sglang-router", module="sglang_router.launch_router"
    ),
    "smg": RouterKind("smg", package="smg", module="smg.launch_router"),
}


def names() -> list[str]:
    """The router kinds a cluster file may name, the default first."""
    return list(KINDS)


def kind(name: str) -> RouterKind:
    """The router kind a (validated) cluster file's ``router.kind`` names."""
    return KINDS[name]
