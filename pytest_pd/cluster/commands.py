"""Pure functions: cluster spec -> the launch plan, every process it runs: each server's command line
as its engine renders it, the router's as its kind does.

Nothing here touches a host; argv lists are shell-quoted only at the SSH edge (and for display).
"""

from __future__ import annotations

import dataclasses
import shlex
from dataclasses import dataclass, field
from typing import Literal

from pytest_pd.cluster import engines, launchers, routers
from pytest_pd.cluster.spec import ClusterSpec, ServerSpec

Role = Literal["prefill", "decode", "router"]


@dataclass(frozen=True)
class LaunchCommand:
    """One process of a topology: where it runs, what it runs, how to know it is up."""

    name: str  # prefill-0, decode-0, prefill-0-rank1, router
    role: Role
    host: str  # host name from the cluster file
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    health_url: str | None = None  # None: not an HTTP endpoint (non-zero node ranks)
    health_timeout_s: float = 1800.0
    base_url: str | None = None  # a server's own URL (rank 0 only): its facts, /metrics, cache flush
    exports_metrics: bool = False  # serves Prometheus /metrics (enable_metrics)
    # the router only: where it lists its workers, and the (role, URL) of each one it must show
    # registered and healthy before bring-up is done
    workers_url: str | None = None
    expected_workers: tuple[tuple[str, str], ...] = ()
    # where it lists the loads it polled, and how long to wait for every worker to show there
    loads_url: str | None = None
    loads_wait_s: float = 0.0
    cpus: str | None = None  # the CPU cores it is pinned to (taskset's list), None: any

    @property
    def launch_argv(self) -> tuple[str, ...]:
        """What is run: ``argv``, under ``taskset -c CPUS`` when pinned."""
        return ("taskset", "-c", self.cpus, *self.argv) if self.cpus else self.argv

    def shell_line(self) -> str:
        """The command as one copy-pasteable shell line (env assignments first)."""
        assignments = [f"{k}={shlex.quote(v)}" for k, v in self.env.items()]
        return " ".join([*assignments, shlex.join(self.launch_argv)])


def interpreter(spec: ClusterSpec, host: str, local_python: str) -> str:
    """The Python that runs a host's processes: the host's ``python:`` as its launcher reads it,
    else this one for processes on this machine, else plain ``python`` as the seed's commands
    have it."""
    return launchers.launcher_of(spec).interpreter(spec.hosts[host].python, local_python)


def launch_plan(spec: ClusterSpec, *, local_python: str = "python") -> list[LaunchCommand]:
    """Every process of the topology in start order: prefill and decode servers, then the router."""
    plan: list[LaunchCommand] = []
    engine = engines.engine_of(spec)
    for role in ("prefill", "decode"):
        for i, server in enumerate(spec.servers(role)):
            for rank, node in enumerate(server.node_hosts):
                plan.append(
                    LaunchCommand(
                        name=f"{role}-{i}" + (f"-rank{rank}" if rank else ""),
                        role=role,
                        host=node,
                        argv=tuple(
                            engine.server_argv(
                                spec, role, server, rank, python=interpreter(spec, node, local_python)
                            )
                        ),
                        env={**spec.env, **server.env},
                        health_url=None if rank else spec.server_url(server) + engine.health_path,
                        health_timeout_s=server.health_timeout_s or 1800.0,
                        base_url=None if rank else spec.server_url(server),
                        exports_metrics=not rank and engine.exports_metrics(server),
                        cpus=server.cpus,
                    )
                )
    kind = routers.kind(spec.router.kind)
    loads = kind.loads_path(spec.router.extra_args)
    plan.append(
        LaunchCommand(
            name="router",
            role="router",
            host=spec.router_host,
            argv=tuple(kind.argv(spec, interpreter(spec, spec.router_host, local_python))),
            env={**spec.env, **spec.router.env},
            health_url=spec.router_url + kind.readiness_path,
            health_timeout_s=spec.router.readiness_timeout_s,
            workers_url=spec.router_url + kind.workers_path,
            expected_workers=expected_workers(spec),
            loads_url=None if loads is None else spec.router_url + loads,
            loads_wait_s=kind.poll_interval_s(spec.router.extra_args) + 2.0,
        )
    )
    return plan


def expected_workers(spec: ClusterSpec) -> tuple[tuple[str, str], ...]:
    """(role, URL) of every worker the router is started with, as the router is told it."""
    return tuple((role, spec.server_url(s)) for role in ("prefill", "decode") for s in spec.servers(role))


def render_commands(spec: ClusterSpec, *, local_python: str = "python") -> str:
    """The whole topology as a shell script: the shared environment as ``export`` lines, then one
    line per process (with its own extra variables inline), each under a comment naming its host."""
    lines = launchers.launcher_of(spec).commands_comment(spec)
    if getattr(engines.engine_of(spec), "flags_probe", None) is not None:
        lines.append(
            f"# rendered for {spec.engine} {spec.engine_version} (the cluster file's engine_version)"
            if spec.engine_version
            else f"# rendered for the newest {spec.engine} pytest-pd knows; at bring-up, for the "
            "version found on the hosts (pin one with engine_version:)"
        )
    lines.append("# environment exported on every host before each launch")
    lines += [f"export {k}={shlex.quote(v)}" for k, v in spec.env.items()]
    for cmd in launch_plan(spec, local_python=local_python):
        own = {k: v for k, v in cmd.env.items() if spec.env.get(k) != v}
        lines.append(f"# {cmd.name} on {cmd.host} ({spec.host_address(cmd.host)})")
        lines.append(dataclasses.replace(cmd, env=own).shell_line())
    return "\n".join(lines) + "\n"


def launch_identity(spec: ClusterSpec) -> str:
    """The topology's launch commands with what does not change what it measures set to fixed
    stand-ins: every port (by role and index), every host's address (its name) and Python
    (``python``). Two runs launched with the same identity ran the same cluster, wherever its
    ports and machines were; :func:`render_commands`' text otherwise."""

    def masked_servers(role: Literal["prefill", "decode"], first_port: int) -> list[ServerSpec]:
        return [
            s.model_copy(update={"port": first_port + i, "bootstrap_port": s.bootstrap_port and 20000 + i})
            for i, s in enumerate(spec.servers(role))
        ]

    router = spec.router.model_copy(
        update={"port": 30000, "prometheus_port": spec.router.prometheus_port and 30001}
    )
    hosts = {name: h.model_copy(update={"address": name, "python": None}) for name, h in spec.hosts.items()}
    masked = spec.model_copy(
        update={
            "prefill": masked_servers("prefill", 10000),
            "decode": masked_servers("decode", 10100),
            "router": router,
            "hosts": hosts,
        }
    )
    return render_commands(masked, local_python="python")
