"""Pure functions: cluster spec -> the argv of every process it runs.

Nothing here touches a host; argv lists are shell-quoted only at the SSH edge (and for display).
"""

from __future__ import annotations

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
    base_url: str | None = None  # a server's own URL (rank 0 only): /get_server_info, /metrics
    exports_metrics: bool = False  # serves Prometheus /metrics (enable_metrics)
    # the router only: where it lists its workers, and the (role, URL) of each one it must show
    # registered and healthy before bring-up is done
    workers_url: str | None = None
    expected_workers: tuple[tuple[str, str], ...] = ()

    def shell_line(self) -> str:
        """The command as one copy-pasteable shell line (env assignments first)."""
        assignments = [f"{k}={shlex.quote(v)}" for k, v in self.env.items()]
        return " ".join([*assignments, shlex.join(self.argv)])


def _flag(argv: list[str], name: str, value: object) -> None:
    if value is None or value is False:
        return
    argv.append(name)
    if value is not True:
        argv.append(str(value))


def interpreter(spec: ClusterSpec, host: str, local_python: str) -> str:
    """The Python that runs a host's processes: the host's ``python:`` as its launcher reads it,
    else this one for processes on this machine, else plain ``python`` as the seed's commands
    have it."""
    return launchers.launcher_of(spec).interpreter(spec.hosts[host].python, local_python)


def server_argv(
    spec: ClusterSpec,
    role: Literal["prefill", "decode"],
    server: ServerSpec,
    rank: int = 0,
    *,
    python: str = "python",
) -> list[str]:
    node = server.node_hosts[rank]
    engine = engines.engine_of(spec)
    argv = [python, "-m", engine.server_module]
    _flag(argv, "--model-path", spec.model_path)
    _flag(argv, "--disaggregation-mode", role)
    _flag(argv, "--disaggregation-transfer-backend", server.transfer_backend)
    _flag(argv, "--disaggregation-ib-device", server.ib_device)
    if role == "prefill":
        _flag(argv, "--disaggregation-bootstrap-port", server.bootstrap_port)
    else:
        _flag(argv, "--disaggregation-prefill-pp", server.prefill_pp)
    _flag(argv, "--host", server.listen or spec.host_address(node))
    _flag(argv, "--port", server.port)
    _flag(argv, "--tp-size", server.tp)
    _flag(argv, "--pp-size", server.pp)
    _flag(argv, "--dp-size", server.dp)
    _flag(argv, "--base-gpu-id", server.base_gpu_id)
    _flag(argv, "--disable-overlap-schedule", server.disable_overlap_schedule)
    _flag(argv, "--trust-remote-code", server.trust_remote_code)
    _flag(argv, "--page-size", server.page_size)
    _flag(argv, "--attention-backend", server.attention_backend)
    _flag(argv, "--mem-fraction-static", server.mem_fraction_static)
    _flag(argv, "--chunked-prefill-size", server.chunked_prefill_size)
    _flag(argv, "--context-length", server.context_length)
    _flag(argv, "--max-running-requests", server.max_running_requests)
    _flag(argv, "--enable-cache-report", server.enable_cache_report)
    _flag(argv, "--enable-metrics", server.enable_metrics)
    _flag(argv, "--dist-timeout", server.dist_timeout)
    if len(server.node_hosts) > 1:
        _flag(argv, "--nnodes", len(server.node_hosts))
        _flag(argv, "--node-rank", rank)
        _flag(argv, "--dist-init-addr", server.dist_init_addr)
    argv.extend(server.extra_args)
    argv += engine.server_args(engines.options(spec, server))
    return argv


def router_argv(spec: ClusterSpec, *, python: str = "python") -> list[str]:
    """The router's command line; every kind (cluster/routers.py) takes these same flags."""
    r = spec.router
    argv = [python, "-m", routers.kind(spec.router.kind).module, "--pd-disaggregation"]
    for server in spec.servers("prefill"):
        argv += ["--prefill", spec.server_url(server)]
        if server.bootstrap_port is not None:
            argv.append(str(server.bootstrap_port))
    for server in spec.servers("decode"):
        argv += ["--decode", spec.server_url(server)]
    _flag(argv, "--host", r.listen or spec.host_address(spec.router_host))
    _flag(argv, "--port", r.port)
    _flag(argv, "--policy", r.policy)
    _flag(argv, "--prefill-policy", r.prefill_policy)
    _flag(argv, "--decode-policy", r.decode_policy)
    _flag(argv, "--worker-startup-timeout-secs", r.startup_timeout_s)
    _flag(argv, "--worker-startup-check-interval", r.startup_check_interval_s)
    _flag(argv, "--prometheus-host", r.prometheus_host)
    _flag(argv, "--prometheus-port", r.prometheus_port)
    _flag(argv, "--request-timeout-secs", r.request_timeout_s)
    argv.extend(r.extra_args)
    return argv


def launch_plan(spec: ClusterSpec, *, local_python: str = "python") -> list[LaunchCommand]:
    """Every process of the topology in start order: prefill and decode servers, then the router."""
    plan: list[LaunchCommand] = []
    for role in ("prefill", "decode"):
        for i, server in enumerate(spec.servers(role)):
            for rank, node in enumerate(server.node_hosts):
                plan.append(
                    LaunchCommand(
                        name=f"{role}-{i}" + (f"-rank{rank}" if rank else ""),
                        role=role,
                        host=node,
                        argv=tuple(
                            server_argv(
                                spec, role, server, rank, python=interpreter(spec, node, local_python)
                            )
                        ),
                        env={**spec.env, **server.env},
                        health_url=None if rank else spec.server_url(server) + "/health",
                        health_timeout_s=server.health_timeout_s or 1800.0,
                        base_url=None if rank else spec.server_url(server),
                        exports_metrics=not rank
                        and bool(server.enable_metrics or spec.server_defaults.enable_metrics),
                    )
                )
    kind = routers.kind(spec.router.kind)
    plan.append(
        LaunchCommand(
            name="router",
            role="router",
            host=spec.router_host,
            argv=tuple(router_argv(spec, python=interpreter(spec, spec.router_host, local_python))),
            env={**spec.env, **spec.router.env},
            health_url=spec.router_url + kind.readiness_path,
            health_timeout_s=spec.router.readiness_timeout_s,
            workers_url=spec.router_url + kind.workers_path,
            expected_workers=expected_workers(spec),
        )
    )
    return plan


def expected_workers(spec: ClusterSpec) -> tuple[tuple[str, str], ...]:
    """(role, URL) of every worker the router is started with, as the router is told it."""
    return tuple((role, spec.server_url(s)) for role in ("prefill", "decode") for s in spec.servers(role))


def render_commands(spec: ClusterSpec, *, local_python: str = "python") -> str:
    """The whole topology as a shell script: the shared environment as ``export`` lines, then one
    line per process (with its own extra variables inline), each under a comment naming its host."""
    lines = []
    if launchers.launcher_of(spec).allocates:
        lines += [
            "# launcher: slurm: one job holds a node per host (sbatch --nodes=N, a script that sleeps);",
            "# each line below runs on its host's node as a step of it: srun --jobid=JOB --overlap",
            "# --nodes=1 --ntasks=1 --nodelist=NODE [slurm.srun_args] LINE; <host> is that node's NodeAddr",
        ]
    lines.append("# environment exported on every host before each launch")
    lines += [f"export {k}={shlex.quote(v)}" for k, v in spec.env.items()]
    for cmd in launch_plan(spec, local_python=local_python):
        own = {k: v for k, v in cmd.env.items() if spec.env.get(k) != v}
        lines.append(f"# {cmd.name} on {cmd.host} ({spec.host_address(cmd.host)})")
        lines.append(LaunchCommand(cmd.name, cmd.role, cmd.host, cmd.argv, own).shell_line())
    return "\n".join(lines) + "\n"
