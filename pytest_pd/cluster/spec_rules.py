"""The rules of a cluster file that span fields (hosts named, ports not shared, pp sizes agreeing,
the launcher's and the engine's own rules), checked after the schema: pure, on a parsed spec."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_pd.cluster import engines, launchers, routers
from pytest_pd.cluster.spec import one_of

if TYPE_CHECKING:
    from pytest_pd.cluster.safe_yaml import Loc
    from pytest_pd.cluster.spec import ClusterSpec

_CLUSTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def name_problems(spec: ClusterSpec) -> list[tuple[Loc, str]]:
    """The launcher and the engine are registered ones (checked before anything asks them)."""
    out: list[tuple[Loc, str]] = []
    for loc, name, known in (
        (("launcher",), spec.launcher, launchers.names()),
        (("engine",), spec.engine, engines.names()),
        (("router", "kind"), spec.router.kind, routers.names()),
    ):
        if name not in known:
            out.append((loc, f"expected {one_of(known)}, got {name!r} (str)"))
    return out


def problems(spec: ClusterSpec, cluster_dir: Path | None) -> list[tuple[Loc, str]]:
    """What is wrong across fields of a schema-valid spec: (field, what is wrong)."""
    problems: list[tuple[Loc, str]] = []
    hosts = spec.hosts

    def check_host(loc: Loc, name: str | None) -> None:
        if name is not None and name not in hosts:
            problems.append((loc, f"unknown host {name!r}; hosts in this file: {', '.join(hosts)}"))

    used: dict[tuple[str, int], str] = {}

    def claim(loc: Loc, host: str, port: int | None, what: str) -> None:
        if port is None or host not in hosts:
            return
        key = (hosts[host].address or host, port)
        if key in used:
            problems.append((loc, f"port {port} on {host} is already used by {used[key]}"))
        else:
            used[key] = what

    gpus_used: dict[str, dict[str, tuple[int, int]]] = {}  # host -> server -> [first, end) GPU
    for role in ("prefill", "decode"):
        raw_list = spec.prefill if role == "prefill" else spec.decode
        for i, (raw, server) in enumerate(zip(raw_list, spec.servers(role), strict=True)):
            base: Loc = (role, i)
            if raw.host is None and raw.hosts is None:
                problems.append((base, "needs `host:` (or `hosts:` for a multi-node server)"))
                continue
            if raw.host is not None and raw.hosts is not None:
                problems.append((base + ("hosts",), "give either `host:` or `hosts:`, not both"))
                continue
            for j, h in enumerate(server.node_hosts):
                check_host(base + (("hosts", j) if raw.hosts else ("host",)), h)
            if len(server.node_hosts) > 1 and not server.dist_init_addr:
                problems.append((base + ("hosts",), "a multi-node server needs `dist_init_addr: ADDR:PORT`"))
            rank0 = server.node_hosts[0]
            claim(base + ("port",), rank0, server.port, f"{role}[{i}]")
            if role == "decode" and raw.bootstrap_port is not None:
                problems.append((base + ("bootstrap_port",), "only prefill servers take a bootstrap port"))
            if role == "prefill":
                claim(base + ("bootstrap_port",), rank0, server.bootstrap_port, f"{role}[{i}] bootstrap")
                if raw.prefill_pp is not None:
                    problems.append((base + ("prefill_pp",), "`prefill_pp` belongs on decode servers"))
            gpus_per_node = (server.tp or 1) * (server.pp or 1) // max(len(server.node_hosts), 1)
            first = server.base_gpu_id or 0
            for h in server.node_hosts:
                declared = hosts[h].gpus if h in hosts else None
                if declared is not None and first + gpus_per_node > declared:
                    where = f"GPUs {first}..{first + gpus_per_node - 1}" if first else f"{gpus_per_node} GPUs"
                    problems.append(
                        (
                            base + (("base_gpu_id",) if first else ("tp",)),
                            f"tp×pp needs {where} per node but host {h!r} declares gpus: {declared}",
                        )
                    )
                elif declared is not None:
                    for other, (lo, hi) in gpus_used.get(h, {}).items():
                        if first < hi and lo < first + gpus_per_node:
                            problems.append(
                                (
                                    base + ("base_gpu_id",),
                                    f"GPUs {first}..{first + gpus_per_node - 1} on {h} overlap {other}'s "
                                    f"{lo}..{hi - 1}; give each server sharing a host its own base_gpu_id",
                                )
                            )
                    gpus_used.setdefault(h, {})[f"{role}[{i}]"] = (first, first + gpus_per_node)
    check_host(("router", "host"), spec.router.host)
    claim(("router", "port"), spec.router_host, spec.router.port, "router")
    if spec.router.prometheus_port is not None:
        claim(
            ("router", "prometheus_port"), spec.router_host, spec.router.prometheus_port, "router prometheus"
        )

    problems += launchers.launcher_of(spec).problems(spec)
    problems += _engine_option_problems(spec)
    problems += engines.engine_of(spec).spec_problems(spec)

    if spec.baseline is not None and cluster_dir is not None:
        problems += _baseline_problems(spec.baseline, cluster_dir)
    if spec.name is not None and spec.source is not None and spec.name != spec.source.stem:
        problems.append(
            (
                ("name",),
                f"name {spec.name!r} differs from the file name "
                f"{spec.source.stem!r}; make them equal (clusters are found by file name)",
            )
        )
    return problems


def _engine_option_problems(spec: ClusterSpec) -> list[tuple[Loc, str]]:
    """Engine option blocks (``sim:`` at the top, in server_defaults and in each server) belong to
    the engine that reads them, which checks their entries; a block no engine owns is an unknown
    key."""
    engine = engines.engine_of(spec)
    problems: list[tuple[Loc, str]] = []
    for loc, block in spec.option_blocks():
        key = str(loc[-1])
        owner = engines.owner_of(key)
        if owner is None:
            own = f", {engine.options_key} (engine {engine.name}'s options)" if engine.options_key else ""
            problems.append(
                (loc, f"unknown key {key!r}; allowed here: {', '.join(spec.fields_at(loc))}{own}")
            )
        elif engine.options_key != key:
            problems.append((loc, f"a `{key}:` block needs `engine: {owner}`"))
        elif block:
            problems += [(loc + (name,), why) for name, why in engine.option_problems(block)]
    return problems


def _baseline_problems(baseline: str, cluster_dir: Path) -> list[tuple[Loc, str]]:
    """The baseline names a cluster file next to this one."""
    if not _CLUSTER_NAME.fullmatch(baseline):
        return [
            (
                ("baseline",),
                f"{baseline[:60]!r} is not a cluster name (up to 100 letters, "
                "digits, . _ -: the stem of a file in the same folder)",
            )
        ]
    path = cluster_dir / f"{baseline}.yaml"
    try:
        found = path.is_file()
    except OSError as exc:  # an unreadable folder
        return [(("baseline",), f"cannot look for {path}: {exc.strerror}")]
    if found:
        return []
    return [(("baseline",), f"baseline cluster {baseline!r} has no file {path}; create it or fix the name")]
