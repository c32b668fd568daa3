"""The processes to deploy: each server (all its nodes) and the router, with the container command
taken from the cluster's launch plan — the argv `pytest-pd commands NAME` prints — and only these
substitutions, each because a pod is not the host the cluster file names:

- the interpreter (``python`` or the host's ``python:``) becomes the image's ``python3``;
- what a process binds (SGLang's ``--host``, the router's ``--host`` and ``--prometheus-host``)
  becomes ``0.0.0.0``;
- the router's worker URLs (``--prefill URL`` / ``--decode URL``) point at the servers' Services;
- a multi-node server's rendezvous address (``--dist-init-addr``) keeps its port but points at the
  LeaderWorkerSet leader (``$(LWS_LEADER_ADDRESS)``), and its node rank (``--node-rank``) is
  ``$(LWS_WORKER_INDEX)``: one pod template serves every node, Kubernetes expands both from the
  variables LWS sets in each pod;
- the first GPU's index (``--base-gpu-id``) goes: the device plugin hands each pod its own GPUs,
  numbered from 0.

Which flag plays which part is the engine's (``Engine.pod_flags``) and the router kind's
(``RouterKind.pod_flags``) to say.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from pytest_pd.cluster import engines, routers
from pytest_pd.cluster.commands import LaunchCommand, Role, launch_plan
from pytest_pd.cluster.spec import ClusterSpec
from pytest_pd.manifests.naming import service_host

PYTHON = "python3"
BIND_ALL = "0.0.0.0"
LEADER_ADDRESS = "$(LWS_LEADER_ADDRESS)"
WORKER_INDEX = "$(LWS_WORKER_INDEX)"

# flag -> new value from the old one (None: drop the flag and its value)
Substitution = Callable[[str], str | None]


@dataclass(frozen=True)
class Process:
    name: str  # prefill-0, decode-0, router: the launch plan's name of its rank-0 process
    role: Role
    nodes: int  # pods per group: the leader and the workers of a multi-node server
    argv: tuple[str, ...]  # the container's command, the same on every node
    env: dict[str, str]
    ports: dict[str, int]  # Service port name -> port
    health_path: str  # readiness probe path (on the leader): the plan's health check
    gpus: int | None  # nvidia.com/gpu per pod; None where the cluster file declares no GPUs
    rdma: bool  # moves KV over an InfiniBand device named in the file


def substitute(argv: Sequence[str], rules: Mapping[str, Substitution]) -> list[str]:
    """``argv`` with the interpreter replaced and the value after each flag in ``rules`` (every
    occurrence) rewritten or, for None, dropped with its flag."""
    out = [PYTHON]
    rest = list(argv[1:])
    while rest:
        arg = rest.pop(0)
        if arg in rules and rest:
            new = rules[arg](rest.pop(0))
            if new is not None:
                out += [arg, new]
        else:
            out.append(arg)
    return out


def _dist_init_addr(value: str) -> str:
    return f"{LEADER_ADDRESS}:{value.rsplit(':', 1)[1]}"


# what a flag of each role (the engine's pod_flags) becomes in a pod
SERVER_ROLES: dict[str, Substitution] = {
    "bind": lambda _: BIND_ALL,
    "first_gpu": lambda _: None,
    "node_rank": lambda _: WORKER_INDEX,
    "dist_init_addr": _dist_init_addr,
}


def server_rules(pod_flags: Mapping[str, str]) -> dict[str, Substitution]:
    """The engine's flags (role -> flag) with what each becomes in a pod."""
    return {flag: SERVER_ROLES[role] for role, flag in pod_flags.items()}


def router_rules(
    pod_flags: Mapping[str, Sequence[str]], worker_urls: Mapping[str, str]
) -> dict[str, Substitution]:
    """The router kind's flags that bind (``bind``) or name a worker (``worker_url``); ``worker_urls``:
    each server's URL as the cluster file has it -> its Service's URL."""
    rules: dict[str, Substitution] = {flag: lambda _: BIND_ALL for flag in pod_flags.get("bind", ())}
    rules.update({flag: lambda url: worker_urls[url] for flag in pod_flags.get("worker_url", ())})
    return rules


def processes(spec: ClusterSpec, namespace: str) -> list[Process]:
    """Every server, then the router, in the launch plan's order."""
    plan = {cmd.name: cmd for cmd in launch_plan(spec)}
    rules = server_rules(engines.engine_of(spec).pod_flags)
    found: list[Process] = []
    urls: dict[str, str] = {}
    for role in ("prefill", "decode"):
        for i, server in enumerate(spec.servers(role)):
            cmd = plan[f"{role}-{i}"]
            ports = {"http": server.port}
            if server.bootstrap_port is not None:
                ports["bootstrap"] = server.bootstrap_port
            host = spec.hosts[server.node_hosts[0]]
            nodes = len(server.node_hosts)
            gpus = (server.tp or 1) * (server.pp or 1) // nodes if host.gpus is not None else None
            found.append(_process(cmd, rules, nodes, ports, gpus, rdma=bool(server.ib_device)))
            urls[spec.server_url(server)] = f"http://{service_host(spec, cmd.name, namespace)}:{server.port}"
    router = plan["router"]
    ports = {"http": spec.router.port}
    if spec.router.prometheus_port is not None:
        ports["metrics"] = spec.router.prometheus_port
    kind = routers.kind(spec.router.kind)
    found.append(_process(router, router_rules(kind.pod_flags, urls), 1, ports, None, rdma=False))
    return found


def _process(
    cmd: LaunchCommand,
    rules: Mapping[str, Substitution],
    nodes: int,
    ports: dict[str, int],
    gpus: int | None,
    *,
    rdma: bool,
) -> Process:
    assert cmd.health_url is not None  # rank 0 and the router always have one
    return Process(
        name=cmd.name,
        role=cmd.role,
        nodes=nodes,
        argv=tuple(substitute(cmd.argv, rules)),
        env=dict(cmd.env),
        ports=ports,
        health_path=urlsplit(cmd.health_url).path,
        gpus=gpus,
        rdma=rdma,
    )
