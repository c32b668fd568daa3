"""What ``pytest-pd plan`` shows and writes: the candidate table, the Pareto chart, and the best
candidates as ready-to-run cluster files made from a template (hosts, env, flags kept; servers,
ports and parallelism set), each with its prediction beside it."""

from __future__ import annotations

import copy
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from pytest_pd.sim.candidates import describe
from pytest_pd.sim.model import ServerShape
from pytest_pd.sim.routing import Topology

from .plan import PER_GPU, Candidate

PLACEMENT_KEYS = (
    "host",
    "hosts",
    "port",
    "bootstrap_port",
    "tp",
    "pp",
    "chunked_prefill_size",
    "prefill_pp",
    "max_running_requests",
    "base_gpu_id",
    "dist_init_addr",
)
"""Server keys a plan sets; every other key of the template's first server of a role is kept."""


# ---------------------------------------------------------------------------------------------
# Table and chart
# ---------------------------------------------------------------------------------------------


def table(shown: Sequence[tuple[str, Candidate]], marks: Mapping[int, str]) -> str:
    """One line per (rank, candidate): topology, GPUs, throughput, TTFT, TPOT (model time)."""
    head = (
        f"{'#':>3}  {'topology':<42} {'GPUs':>4} {'tok/s/GPU':>9} {'tok/s':>7} {'TTFT s':>7} "
        f"{'p90':>6} {'TPOT ms':>7} {'p90':>6}  note"
    )
    lines = [head]
    for rank, c in shown:
        note = "; ".join(filter(None, (marks.get(id(c), ""), c.problem, "Pareto front" if c.pareto else "")))
        s = c.stats
        numbers = " " * 52
        if s:
            numbers = (
                f"{s[PER_GPU]:>9.1f} {s['output_throughput']:>7.1f} {s['mean_ttft_ms'] / 1000:>7.2f} "
                f"{s['p90_ttft_ms'] / 1000:>6.2f} {s['mean_tpot_ms']:>7.1f} {s['p90_tpot_ms']:>6.1f}"
            )
        lines.append(f"{rank:>3}  {describe(c.topology):<42} {c.gpus:>4} {numbers}  {note}")
    return "\n".join(lines)


def summary(candidates: Sequence[Candidate]) -> str:
    """How many were evaluated, did not fit, missed an SLO, are on the front; the commonest misfits."""
    memory = [c for c in candidates if c.problem.startswith("memory")]
    slo = [c for c in candidates if c.problem.startswith("SLO")]
    front = [c for c in candidates if c.pareto]
    lines = [
        f"{len(candidates)} candidates: {len(memory)} do not fit in memory, {len(slo)} miss an SLO, "
        f"{len(candidates) - len(memory) - len(slo)} meet every SLO, {len(front)} on the Pareto front"
    ]
    reasons = Counter(c.problem.removeprefix("memory: ") for c in memory)
    lines += [f"  {n:>4} x {reason}" for reason, n in reasons.most_common(3)]
    return "\n".join(lines)


def chart(candidates: Sequence[Candidate], marks: Mapping[int, str], path: Path) -> None:
    """Throughput per GPU against mean TTFT and against mean TPOT: the front highlighted, SLO
    misses grey, the template's and baseline's topologies labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evaluated = [c for c in candidates if c.stats]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for ax, stat, unit, scale in (
        (axes[0], "mean_ttft_ms", "mean TTFT (s)", 1000.0),
        (axes[1], "mean_tpot_ms", "mean TPOT (ms)", 1.0),
    ):
        for group, colour, label in (
            ([c for c in evaluated if c.problem], "#bbbbbb", "misses an SLO"),
            ([c for c in evaluated if c.feasible and not c.pareto], "#6a9fd8", "meets the SLOs"),
            ([c for c in evaluated if c.pareto], "#d95f02", "Pareto front"),
        ):
            if group:
                ax.scatter(
                    [c.stats[stat] / scale for c in group],
                    [c.stats[PER_GPU] for c in group],
                    s=18,
                    c=colour,
                    label=label,
                )
        for c in evaluated:
            if id(c) in marks:
                ax.annotate(
                    marks[id(c)],
                    (c.stats[stat] / scale, c.stats[PER_GPU]),
                    textcoords="offset points",
                    xytext=(4, 4),
                    fontsize=8,
                )
        ax.set_xlabel(unit)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("output tokens/s per GPU")
    axes[0].legend(fontsize=8)
    fig.suptitle("candidate topologies (predicted)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# Cluster files
# ---------------------------------------------------------------------------------------------


def rebase_paths(raw: Mapping[str, Any], src: Path, dst: Path) -> dict[str, Any]:
    """A copy of a cluster file's data moved from folder ``src`` to ``dst``: relative local paths
    (model, tokenizer, profiles, ssh key/config/known_hosts, lock folders) still point where they
    did."""
    out = copy.deepcopy(dict(raw))

    def fix(holder: Any, key: str) -> None:
        if isinstance(holder, dict) and isinstance(holder.get(key), str):
            value = holder[key]
            if not value.startswith("~") and not Path(value).is_absolute():
                holder[key] = os.path.relpath(src.resolve() / value, dst.resolve())

    model = out.get("model")
    fix(model, "path")
    fix(model, "tokenizer")
    fix(out.get("twin"), "profile")
    fix(out.get("sim"), "profile")
    fix(
        out.get("server_defaults", {}).get("sim") if isinstance(out.get("server_defaults"), dict) else None,
        "profile",
    )
    for role in ("prefill", "decode"):
        for server in out.get(role) or []:
            fix(server.get("sim") if isinstance(server, dict) else None, "profile")
    for host in (out.get("hosts") or {}).values():
        fix(host, "lock_dir")
        if isinstance(host, dict):
            for key in ("key", "config", "known_hosts"):
                fix(host.get("ssh"), key)
    return out


def place(
    servers: Sequence[ServerShape], hosts: Sequence[tuple[str, int]], prefer: Sequence[str | None] = ()
) -> list[tuple[str, int]]:
    """(host, first GPU) per server, in order: largest first onto the first host with room, trying
    the server's ``prefer`` host (its role's host in the template) before the others (servers
    never span hosts). Raises ValueError when they do not fit."""
    free = {name: gpus for name, gpus in hosts}
    order = sorted(range(len(servers)), key=lambda i: -servers[i].tp * servers[i].pp)
    placed: dict[int, tuple[str, int]] = {}
    for i in order:
        size = servers[i].tp * servers[i].pp
        first = prefer[i] if i < len(prefer) else None
        for name, gpus in sorted(hosts, key=lambda h: h[0] != first):
            if free[name] >= size:
                placed[i] = (name, gpus - free[name])
                free[name] -= size
                break
        else:
            raise ValueError(f"{describe_servers(servers)} does not fit on hosts {dict(hosts)}")
    return [placed[i] for i in range(len(servers))]


def describe_servers(servers: Sequence[ServerShape]) -> str:
    return ", ".join(f"TP{s.tp}xPP{s.pp}" for s in servers)


def plan_cluster(
    template: Mapping[str, Any],
    topology: Topology,
    name: str,
    host_gpus: Sequence[tuple[str, int]],
    addresses: Mapping[str, str],
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    """The template's data with its servers replaced by ``topology``'s, placed on its hosts; ports
    start at the template's and skip those already taken on the same address."""
    out = {k: copy.deepcopy(v) for k, v in template.items() if k not in ("prefill", "decode")}
    if isinstance(out.get("server_defaults"), dict):  # each server says its own shape
        for key in ("tp", "pp", "base_gpu_id", "prefill_pp", "chunked_prefill_size"):
            out["server_defaults"].pop(key, None)
    out["name"] = name
    out.update(extra)
    taken: set[tuple[str, int]] = set()
    router = template.get("router") or {}
    router_host = router.get("host") or (template.get("prefill") or [{}])[0].get("host")
    if router_host in addresses:
        for port in (router.get("port", 8000), router.get("prometheus_port")):
            if port is not None:
                taken.add((addresses[router_host], int(port)))

    def free_port(host: str, start: int) -> int:
        port = start
        while (addresses[host], port) in taken:
            port += 1
        taken.add((addresses[host], port))
        return port

    servers = list(topology.prefill) + list(topology.decode)
    homes = {role: (template.get(role) or [{}])[0].get("host") for role in ("prefill", "decode")}
    spots = place(
        servers,
        host_gpus,
        [homes["prefill"]] * len(topology.prefill) + [homes["decode"]] * len(topology.decode),
    )
    for role, shapes, offset in (
        ("prefill", topology.prefill, 0),
        ("decode", topology.decode, len(topology.prefill)),
    ):
        first = dict((template.get(role) or [{}])[0])
        kept = {k: v for k, v in first.items() if k not in PLACEMENT_KEYS}
        written = []
        for i, shape in enumerate(shapes):
            host, gpu = spots[offset + i]
            server: dict[str, Any] = {"host": host, "port": free_port(host, int(first.get("port", 30000)))}
            if role == "prefill":
                server["bootstrap_port"] = free_port(host, int(first.get("bootstrap_port", 8998)))
            server["tp"] = shape.tp
            if shape.pp > 1:
                server["pp"] = shape.pp
            if gpu:
                server["base_gpu_id"] = gpu
            if role == "prefill":
                server["chunked_prefill_size"] = shape.chunked_prefill_size
            elif shape.prefill_pp > 1:
                server["prefill_pp"] = shape.prefill_pp
            if role == "decode" and shape.max_running_requests:
                server["max_running_requests"] = shape.max_running_requests
            written.append({**server, **kept})
        out[role] = written
    return out


def dump(data: Mapping[str, Any], path: Path, header: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = yaml.safe_dump(dict(data), sort_keys=False, allow_unicode=True)
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(comment + body, encoding="utf-8")
    tmp.replace(path)
