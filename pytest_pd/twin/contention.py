"""Whether the timing model can stand for a cluster's hardware: it gives every server hardware of
its own. Servers of a CPU engine (``--device cpu``) on one host share its cores unless each is
pinned to cores of its own (``cpus:``); their runs then measure the contention, which the model
does not describe, so it says so instead of giving a number."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pytest_pd.cluster.flags import read_flags


def cpu_set(text: str) -> set[int]:
    """The cores of a ``taskset -c`` list ("0-3,8")."""
    cores: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        cores.update(range(int(lo), int(hi or lo) + 1))
    return cores


def _device(args: list[str]) -> str | None:
    device = None
    for name, value in read_flags(args, {"--device"}):
        if name == "--device":
            device = value
    return device


def shared_cores(spec: Mapping[str, Any]) -> str | None:
    """Why two CPU servers of a cluster file (as a record keeps it) share cores, or None."""
    defaults = spec.get("server_defaults") or {}
    placed: dict[str, list[tuple[str, set[int] | None]]] = {}
    for role in ("prefill", "decode"):
        for i, server in enumerate(spec.get(role) or []):
            args = [*(defaults.get("extra_args") or []), *(server.get("extra_args") or [])]
            if _device([str(a) for a in args]) != "cpu":
                continue
            hosts = server.get("hosts") or [server.get("host")]
            cpus = server.get("cpus") or defaults.get("cpus")
            for host in hosts:
                placed.setdefault(str(host), []).append((f"{role}[{i}]", cpu_set(cpus) if cpus else None))
    for host, servers in placed.items():
        for k, (name, cores) in enumerate(servers):
            for other, other_cores in servers[k + 1 :]:
                if cores is None or other_cores is None or cores & other_cores:
                    return (
                        f"{name} and {other} run on the CPU of host {host} and share its cores (no "
                        "disjoint `cpus:`); the model gives each server hardware of its own: pin "
                        "each to its own cores with `cpus:`"
                    )
    return None
