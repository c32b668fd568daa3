"""Router kinds: which router program fronts the workers (the cluster file's ``router.kind``).

Everything that differs between the kinds lives in this one table; the rest of pytest-pd renders,
gates and scrapes every kind the same way. The kinds shipped here take the same flags (smg is
sglang-router's successor, spun out as its own PyPI package; vllm-router, for vLLM's PD workers,
has its own PD switch and no bootstrap ports) and serve the same ``/readiness`` and ``/workers``;
a kind that differs in more adds a field here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pytest_pd.cluster.flags import flag, read_flags

if TYPE_CHECKING:
    from pytest_pd.cluster.spec import ClusterSpec

DEFAULT = "sglang-router"


def sglang_router_argv(spec: ClusterSpec, python: str, kind: RouterKind) -> list[str]:
    """sglang-router's command line (smg and vllm-router take the same flags, vllm-router with its
    own PD switch): the workers by URL, a prefill's bootstrap port after its URL where the kind
    takes one, then the router's own settings and ``extra_args``."""
    r = spec.router
    argv = [python, "-m", kind.module, kind.pd_flag]
    for server in spec.servers("prefill"):
        argv += ["--prefill", spec.server_url(server)]
        if server.bootstrap_port is not None and kind.bootstrap_ports:
            argv.append(str(server.bootstrap_port))
    for server in spec.servers("decode"):
        argv += ["--decode", spec.server_url(server)]
    flag(argv, "--host", r.listen or spec.host_address(spec.router_host))
    for field_name, name in _SETTINGS:
        flag(argv, name, getattr(r, field_name))
    argv.extend(r.extra_args)
    return argv


_SETTINGS = (
    ("port", "--port"),
    ("policy", "--policy"),
    ("prefill_policy", "--prefill-policy"),
    ("decode_policy", "--decode-policy"),
    ("startup_timeout_s", "--worker-startup-timeout-secs"),
    ("startup_check_interval_s", "--worker-startup-check-interval"),
    ("prometheus_host", "--prometheus-host"),
    ("prometheus_port", "--prometheus-port"),
    ("request_timeout_s", "--request-timeout-secs"),
)
"""The router's settings rendered as one flag each (after its workers and ``--host``), in order."""


@dataclass
class ImportedRouter:
    """A router command line read back (``pytest-pd import``): its kind, the workers by URL (a
    prefill's bootstrap port beside it), the address it listens on, the settings that render its
    flags and the rest of its arguments."""

    kind: str
    prefill: list[tuple[str, int | None]]
    decode: list[str]
    host: str | None
    fields: dict[str, str]
    extra_args: list[str]


def read_router_argv(module: str, args: Sequence[str]) -> ImportedRouter | None:
    """The command line of a router run as ``python -m module args``; None when ``module`` is no
    router kind's. Raises ``ValueError`` for a flag without its value."""
    kind = next((k for k in KINDS.values() if k.module == module), None)
    if kind is None:
        return None
    settings = {name: field_name for field_name, name in _SETTINGS}
    out = ImportedRouter(kind.name, [], [], None, {}, [])
    last = None
    for name, value in read_flags(
        [a for a in args if a != kind.pd_flag], {"--prefill", "--decode", "--host", *settings}
    ):
        text = str(value)
        if name is None and last == "--prefill" and kind.bootstrap_ports and text.isdigit():
            out.prefill[-1] = (out.prefill[-1][0], int(text))  # the prefill's bootstrap port
        elif name is None:
            out.extra_args.append(text)
        elif name == "--prefill":
            out.prefill.append((text, None))
        elif name == "--decode":
            out.decode.append(text)
        elif name == "--host":
            out.host = text
        else:
            out.fields[settings[name]] = text
        last = name
    return out


@dataclass(frozen=True)
class PolicyFlag:
    """A policy whose behaviour one of the router's flags chooses: the flag, the value it takes
    when not given, and the model policy (sim/routing.py's POLICIES) of each value that is
    modelled."""

    flag: str
    default: str
    models: Mapping[str, str]


@dataclass(frozen=True)
class LoadPolling:
    """How a router polls its workers' loads: where it lists what it last polled, the flag that
    sets the interval and its default (seconds), and the flag that turns polling off."""

    path: str = "/loads"
    interval_flag: str = "--load-monitor-interval"
    interval_s: float = 10.0
    off_flag: str = "--disable-load-monitoring"


@dataclass(frozen=True)
class RouterKind:
    name: str  # the cluster file's ``router.kind``
    package: str  # the PyPI distribution that provides it (pinned in pyproject.toml)
    # Run as ``PYTHON -m MODULE`` with the router host's interpreter, like the workers: the host's
    # ``python:`` (or this venv's for launcher: local) is the one place the cluster file says
    # which environment runs things, and a console script (``smg launch``) would depend on that
    # environment's bin/ being on the PATH of a non-login SSH shell.
    module: str
    render: Callable[[ClusterSpec, str, RouterKind], list[str]] = sglang_router_argv  # (spec, python, kind)
    pd_flag: str = "--pd-disaggregation"  # the switch to prefill/decode mode
    bootstrap_ports: bool = True  # a prefill's URL is followed by its bootstrap port
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

    # What each ``--policy`` does in PD mode, in the timing model's terms (sim/routing.py's
    # POLICIES), read from the installed version's source and checked against it; a policy not
    # listed is not modelled. ``default_policy`` is what runs without ``--policy``.
    modelled_policies: Mapping[str, str] = field(
        default_factory=lambda: {
            "round_robin": "round_robin",
            "random": "random",
            # 0.3.2 compares two random workers' loads as polled from them every 30 s (the
            # startup check interval): between polls they tie and the first draw wins, so it
            # routes as random does (measured: 2P2D and 1P3D throughput within the random
            # model's draws, 11-13 % below a power-of-two model's on in-flight counts)
            "power_of_two": "random",
            # 0.3.2 never fills its PD prefix trees: random until the loads are imbalanced
            "cache_aware": "random_unless_imbalanced",
        }
    )
    default_policy: str = "cache_aware"
    # policies whose behaviour a flag chooses (checked before ``modelled_policies``)
    policy_flags: Mapping[str, PolicyFlag] = field(default_factory=dict)
    # how it polls its workers' loads, if it keeps them (None: it keeps none worth waiting for)
    load_polling: LoadPolling | None = None
    # the flags a pod rewrites: "bind" (addresses it listens on), "worker_url" (a worker's URL)
    pod_flags: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: {
            "bind": ("--host", "--prometheus-host"),
            "worker_url": ("--prefill", "--decode"),
        }
    )

    def argv(self, spec: ClusterSpec, python: str) -> list[str]:
        """The router's command line, run by ``python``."""
        return self.render(spec, python, self)

    def policy_model(self, policy: str, extra_args: Sequence[str]) -> str | None:
        """The model policy of ``--policy POLICY`` run with ``extra_args``; None if not modelled."""
        chooser = self.policy_flags.get(policy)
        if chooser is None:
            return self.modelled_policies.get(policy)
        given = [value for name, value in read_flags(extra_args, {chooser.flag}) if name and value]
        return chooser.models.get(given[-1] if given else chooser.default)

    def loads_path(self, extra_args: Sequence[str]) -> str | None:
        """Where the router lists the loads it polled, for bring-up to wait until it lists every
        worker; None when it polls none (so run)."""
        polling = self.load_polling
        return None if polling is None or polling.off_flag in extra_args else polling.path

    def poll_interval_s(self, extra_args: Sequence[str]) -> float:
        """Seconds between the router's polls of its workers' loads, as ``extra_args`` set them
        (what the model's polled policies read)."""
        polling = self.load_polling or LoadPolling()
        given = [value for name, value in read_flags(extra_args, {polling.interval_flag}) if name and value]
        try:
            return float(given[-1]) if given else polling.interval_s
        except ValueError:
            return polling.interval_s

    def modelled(self) -> list[str]:
        """The policies modelled, as a user would name them (for "not modelled" messages)."""
        out = list(self.modelled_policies)
        for policy, chooser in self.policy_flags.items():
            out.append(f"{policy} with {chooser.flag} {' or '.join(chooser.models)}")
        return out


KINDS: dict[str, RouterKind] = {
    "sglang-router": RouterKind(
        "sglang-router", package="sglang-router", module="sglang_router.launch_router"
    ),
    "smg": RouterKind(
        "smg",
        package="smg",
        module="smg.launch_router",
        # 1.13's cache_aware (sim/routing.py's prefix_expected_wait, from its cache_aware.rs and
        # kv_index's token_tree.rs): a prefix tree per side (16-token pages for input_ids), a
        # match over --cache-threshold of the prompt goes to the least expected wait among the
        # workers holding it unless they are over the pressure gate; otherwise (every prompt
        # sharing nothing) the least expected wait of all (its least_load.rs): each worker's load
        # as polled from its /metrics every --load-monitor-interval seconds (not stopped by
        # --disable-load-monitoring for a policy that needs loads), plus the prompt tokens sent to
        # it since. Measured behind smg (2P2D, 3P1D, 1P3D): within 9.9 % (TTFT; TPOT and
        # throughput within 3.6 %), once bring-up waits for /loads to list every worker (before
        # its first poll of one, smg piles requests on the others); with prompts sharing
        # prefixes within 8.7 % (TTFT; 4.3 % otherwise), but for one 3P1D run in 57 at -14.6 %
        modelled_policies={
            "round_robin": "round_robin",
            "random": "random",
            "cache_aware": "prefix_expected_wait",
        },
        load_polling=LoadPolling(),
        # power_of_two: "requests" keeps the fewer of the router's own in-flight counts of two
        # drawn at random, "least_requests" the fewest of all (ties to the least expected wait),
        # "expected_wait" (the default) the lesser expected wait of two. Measured behind smg
        # (2P2D, 3P1D, 1P3D): within 6.9 % of the first two models, 9.9 % of the third (TTFT;
        # TPOT and throughput within 2.3 %)
        policy_flags={
            "power_of_two": PolicyFlag(
                "--power-of-two-load-metric",
                default="expected_wait",
                models={
                    "requests": "power_of_two",
                    "least_requests": "least_load",
                    "expected_wait": "power_of_two_expected_wait",
                },
            )
        },
    ),
    # vLLM's PD workers (KV over NIXL: no bootstrap port); its own Prometheus families
    "vllm-router": RouterKind(
        "vllm-router",
        package="vllm-router",
        module="vllm_router.launch_router",
        pd_flag="--vllm-pd-disaggregation",
        bootstrap_ports=False,
        modelled_policies={"round_robin": "round_robin", "random": "random"},
        metric_families=(
            "vllm_router_pd_requests_total",
            "vllm_router_pd_prefill_requests_total",
            "vllm_router_pd_decode_requests_total",
            "vllm_router_pd_prefill_errors_total",
            "vllm_router_pd_decode_errors_total",
            "vllm_router_worker_health",
            "vllm_router_pd_active_decode_requests",
        ),
    ),
}


def names() -> list[str]:
    """The router kinds a cluster file may name, the default first."""
    return list(KINDS)


def kind(name: str) -> RouterKind:
    """The router kind a (validated) cluster file's ``router.kind`` names."""
    return KINDS[name]
