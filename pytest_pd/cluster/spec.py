"""Cluster files (YAML) -> frozen, validated specs.

Pure: reads text handed to it, no other I/O but the file read in ``load_cluster``. Every error
names the file, the line and the field, and says what is allowed. Reading and parsing are bounded
in size, time and memory whatever the file holds (:mod:`pytest_pd.cluster.safe_yaml`).
"""

from __future__ import annotations

import re
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from pytest_pd import redaction
from pytest_pd.cluster.safe_yaml import Loc
from pytest_pd.errors import ClusterFileError


def _env_value(value: Any) -> Any:
    """Env values may be written as numbers (NCCL_IB_TIMEOUT: 22); booleans are ambiguous."""
    if isinstance(value, bool):
        raise ValueError("booleans are ambiguous in the environment: write the value quoted, e.g. '1'")
    if isinstance(value, (int, float)):
        return str(value)
    return value


EnvValue = Annotated[str, BeforeValidator(_env_value)]


def one_of(names: list[str]) -> str:
    quoted = [repr(n) for n in names]
    return " or ".join([", ".join(quoted[:-1]), quoted[-1]] if len(quoted) > 1 else quoted)


def _registered(names: Callable[[], list[str]]) -> BeforeValidator:
    """A name that must be one of ``names()`` (the registered launchers or engines)."""

    def check(value: Any) -> Any:
        known = names()
        if value not in known:
            raise ValueError(f"expected {one_of(known)}")
        return value

    return BeforeValidator(check)


EnvBlock = dict[str, EnvValue]


def _cpu_list(value: Any) -> Any:
    """CPU cores as ``taskset -c`` takes them: "0-3,8"; a single number may be written bare."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not re.fullmatch(r"[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*", text):
        raise ValueError('expected CPU cores as `taskset -c` takes them, e.g. "0-3" or "0,2"')
    return text


CpuList = Annotated[str, BeforeValidator(_cpu_list)]
OptionsBlock = dict[str, bool | int | float | str]
ENGINE_OPTIONS = "engine_options"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class _HoldsEngineOptions(_Model):
    """A level of the file that may hold engine option blocks (the top, ``server_defaults``, each
    server): a key the schema does not name whose value is a mapping (``sim: {…}``) is one. It is
    kept in ``engine_options`` under its key, checked by the cluster's engine (spec_rules: a block
    no engine owns is an unknown key), and written back under its key."""

    engine_options: dict[str, OptionsBlock] = {}

    @model_validator(mode="before")
    @classmethod
    def _collect_blocks(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        blocks = {k: v for k, v in data.items() if k not in cls.model_fields and isinstance(v, Mapping)}
        if not blocks:
            return data
        rest = {k: v for k, v in data.items() if k not in blocks}
        return {**rest, ENGINE_OPTIONS: {**rest.get(ENGINE_OPTIONS, {}), **blocks}}

    @model_serializer(mode="wrap")
    def _spread_blocks(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)
        blocks = out.pop(ENGINE_OPTIONS, None) or {}
        return {**out, **blocks}


def file_loc(loc: Loc) -> Loc:
    """Where a field of the spec is in the file (engine option blocks sit under their own key)."""
    return tuple(part for part in loc if part != ENGINE_OPTIONS)


class SSHSpec(_Model):
    """How to reach a host over SSH. Keys the file sets win; unset ones come from the ssh config
    (``Host`` entry ``alias``, else the address), then from the defaults below."""

    user: str | None = None
    port: int = Field(default=22, ge=1, le=65535)
    key: str | None = None
    password_env: str | None = Field(
        default=None, description="name of an environment variable holding the password"
    )
    insecure_accept_unknown_host_keys: bool = False
    connect_timeout_s: float = Field(default=15.0, gt=0)
    alias: str | None = None
    config: str | None = None
    known_hosts: str | None = None
    keepalive_s: float = Field(default=15.0, gt=0)


class HostSpec(_Model):
    address: str | None = None  # None: where the launcher places it (launcher: slurm)
    node: str | None = None  # launcher: slurm: the node this host must be (else Slurm picks one)
    gpus: int | None = Field(default=None, ge=1)
    python: str | None = None
    workdir: str | None = None
    ssh: SSHSpec = SSHSpec()
    lock_dir: str | None = None
    lock_timeout_s: float = Field(default=1800.0, ge=0)


class SlurmSpec(_Model):
    """``slurm:`` (launcher: slurm): what the bring-up's job asks Slurm for. One node per host of
    the file; ``sbatch_args``/``srun_args`` carry the rest (GPUs, exclusivity, constraints)."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: str | None = None  # the job's time limit, as sbatch --time takes it ("2:00:00")
    sbatch_args: list[str] = []
    srun_args: list[str] = []  # every server's and the router's step, e.g. [--gpus-per-node=8]
    start_timeout_s: float = Field(default=600.0, gt=0)  # pending longer than this: bring-up fails


class ModelSpec(_Model):
    path: str
    tokenizer: str | None = None
    name: str | None = None


class ServerOptions(_HoldsEngineOptions):
    """Launch options shared by prefill and decode servers; None = not rendered (SGLang's default)."""

    tp: int | None = Field(default=None, ge=1)
    pp: int | None = Field(default=None, ge=1)
    dp: int | None = Field(default=None, ge=1)
    base_gpu_id: int | None = Field(default=None, ge=0)
    """First GPU of this server on its node (SGLang's --base-gpu-id), for servers sharing a node."""
    cpus: CpuList | None = None
    """CPU cores this server's processes are pinned to, as ``taskset -c`` takes them ("0-15",
    "0,2"): servers of a CPU engine sharing a host, or one NUMA node's cores per server."""
    transfer_backend: str | None = None
    ib_device: str | None = None
    trust_remote_code: bool | None = None
    page_size: int | None = Field(default=None, ge=1)
    attention_backend: str | None = None
    mem_fraction_static: float | None = Field(default=None, gt=0, le=1)
    chunked_prefill_size: int | None = None
    context_length: int | None = Field(default=None, ge=1)
    max_running_requests: int | None = Field(default=None, ge=1)
    enable_cache_report: bool | None = None
    disable_overlap_schedule: bool | None = None
    enable_metrics: bool | None = None
    dist_timeout: int | None = Field(default=None, ge=1)
    dist_init_addr: str | None = None
    extra_args: list[str] = []
    env: EnvBlock = {}
    health_timeout_s: float | None = Field(default=None, gt=0)


class ServerSpec(ServerOptions):
    host: str | None = None
    hosts: list[str] | None = Field(default=None, min_length=1)
    port: int = Field(ge=1, le=65535)
    listen: str | None = None
    bootstrap_port: int | None = Field(default=None, ge=1, le=65535)
    prefill_pp: int | None = Field(default=None, ge=1)

    @property
    def node_hosts(self) -> list[str]:
        """Host names of every node of this server, rank 0 first."""
        return list(self.hosts) if self.hosts else [typing.cast(str, self.host)]


class RouterSpec(_Model):
    kind: str = "sglang-router"  # cluster/routers.py (the name is checked in spec_rules)
    host: str | None = None
    listen: str | None = None
    port: int = Field(default=8000, ge=1, le=65535)
    policy: str | None = None
    prefill_policy: str | None = None
    decode_policy: str | None = None
    startup_timeout_s: int | None = Field(default=None, ge=1)
    startup_check_interval_s: int | None = Field(default=None, ge=1)
    prometheus_host: str | None = None
    prometheus_port: int | None = Field(default=None, ge=1, le=65535)
    request_timeout_s: int | None = Field(default=None, ge=1)
    readiness_timeout_s: float = Field(default=1800.0, gt=0)
    extra_args: list[str] = []
    env: EnvBlock = {}


class TwinSpec(_Model):
    """``twin: {profile: FILE}``: the timing-model profile that predicts this cluster's runs (FILE
    relative to the cluster file); each run stores its prediction beside what it measured."""

    profile: str


class ClusterSpec(_HoldsEngineOptions):
    name: str | None = None
    description: str = ""
    baseline: str | None = None
    launcher: str = "local"  # cluster/launchers/ (the name is checked in spec_rules)
    engine: str = "sglang"  # cluster/engines/ (the name is checked in spec_rules)
    engine_version: str | None = Field(default=None, pattern=r"^[0-9][0-9A-Za-z.+!-]*$")
    """The engine version the commands are rendered for and bring-up expects on every host;
    unset: the version found on the hosts at bring-up (the newest known when rendered offline)."""
    model: ModelSpec
    hosts: dict[str, HostSpec] = Field(min_length=1)
    env: EnvBlock = {}
    server_defaults: ServerOptions = ServerOptions()
    prefill: list[ServerSpec] = Field(min_length=1)
    decode: list[ServerSpec] = Field(min_length=1)
    router: RouterSpec = RouterSpec()
    slurm: SlurmSpec = SlurmSpec()
    twin: TwinSpec | None = None

    # Set by parse_cluster, never by the file itself.
    _source: Path | None = PrivateAttr(default=None)
    _line_of: Callable[[Loc], int] | None = PrivateAttr(default=None)

    def option_blocks(self) -> list[tuple[Loc, OptionsBlock]]:
        """The engine option blocks (``sim:``) at the top, in server_defaults and in each server,
        each with where it is in the file."""
        levels: list[tuple[Loc, _HoldsEngineOptions]] = [
            ((), self),
            (("server_defaults",), self.server_defaults),
        ]
        for role, servers in (("prefill", self.prefill), ("decode", self.decode)):
            levels += [((role, i), server) for i, server in enumerate(servers)]
        return [(loc + (key,), block) for loc, level in levels for key, block in level.engine_options.items()]

    def fields_at(self, loc: Loc) -> list[str]:
        """The keys the schema names at the level holding ``loc``'s last part."""
        model = type(self) if len(loc) == 1 else ServerOptions if loc[0] == "server_defaults" else ServerSpec
        return [k for k in model.model_fields if k != ENGINE_OPTIONS]

    def file_error(self, problems: list[tuple[Loc, str]]) -> ClusterFileError:
        """The error naming this cluster file, and each problem's line and field, for checks made
        after it was read (``(field, what is wrong)``)."""
        line_of = self._line_of or (lambda loc: 0)
        return ClusterFileError(
            format_problems(
                str(self.source or self.label), [(line_of(loc), loc, msg) for loc, msg in problems]
            )
        )

    @property
    def source(self) -> Path | None:
        return self._source

    @property
    def label(self) -> str:
        return self.name or (self.source.stem if self.source else "cluster")

    def servers(self, role: Literal["prefill", "decode"]) -> list[ServerSpec]:
        """The role's servers with ``server_defaults`` filled in where a server leaves a field unset."""
        raw = self.prefill if role == "prefill" else self.decode
        return [merge_defaults(self.server_defaults, s) for s in raw]

    def host_address(self, host: str) -> str:
        """The host's address; ``<host>`` until its launcher places it (launcher: slurm)."""
        return self.hosts[host].address or f"<{host}>"

    def placed(self, addresses: Mapping[str, str]) -> ClusterSpec:
        """This spec with the hosts at the addresses their launcher chose (Slurm's nodes); a
        multi-node server's ``dist_init_addr: ":PORT"`` becomes its first node's address."""
        hosts = {
            n: h.model_copy(update={"address": addresses.get(n, h.address)}) for n, h in self.hosts.items()
        }

        def server(s: ServerSpec) -> ServerSpec:
            if not (s.dist_init_addr or "").startswith(":"):
                return s
            return s.model_copy(update={"dist_init_addr": addresses[s.node_hosts[0]] + str(s.dist_init_addr)})

        return self.model_copy(
            update={
                "hosts": hosts,
                "prefill": [server(s) for s in self.prefill],
                "decode": [server(s) for s in self.decode],
            }
        )

    def prefill_strategy(self) -> str:
        """The seed table's "prefill strategy" column, e.g. 'TP=4, PP=2'."""
        server = self.servers("prefill")[0]
        parts = [f"TP={server.tp or 1}"]
        if (server.pp or 1) > 1:
            parts.append(f"PP={server.pp}")
        if (server.dp or 1) > 1:
            parts.append(f"DP={server.dp}")
        text = ", ".join(parts)
        n_p, n_d = len(self.prefill), len(self.decode)
        return text if (n_p, n_d) == (1, 1) else f"{text} ({n_p}P{n_d}D)"

    @property
    def router_host(self) -> str:
        return self.router.host or self.prefill[0].node_hosts[0]

    @property
    def router_url(self) -> str:
        return f"http://{_url_host(self.host_address(self.router_host))}:{self.router.port}"

    @property
    def router_metrics_url(self) -> str | None:
        """The router's own Prometheus ``/metrics`` (only when the file sets its port); an
        unspecified ``prometheus_host`` (all interfaces) is reached at the router host's address."""
        port = self.router.prometheus_port
        if port is None:
            return None
        host = self.router.prometheus_host
        if host in (None, "", "0.0.0.0", "::"):
            host = self.host_address(self.router_host)
        return f"http://{_url_host(host)}:{port}/metrics"

    def server_url(self, server: ServerSpec) -> str:
        return f"http://{_url_host(self.host_address(server.node_hosts[0]))}:{server.port}"

    def ports_by_host(self) -> dict[str, list[tuple[str, str, int]]]:
        """Every port the cluster binds, per host: (what, address, port)."""
        wanted: dict[str, list[tuple[str, str, int]]] = {}
        for role in ("prefill", "decode"):
            for i, server in enumerate(self.servers(role)):
                host = server.node_hosts[0]
                address = server.listen or self.host_address(host)
                wanted.setdefault(host, []).append((f"{role}-{i}", address, server.port))
                if server.bootstrap_port:
                    wanted[host].append((f"{role}-{i} bootstrap", address, server.bootstrap_port))
        router_address = self.router.listen or self.host_address(self.router_host)
        wanted.setdefault(self.router_host, []).append(("router", router_address, self.router.port))
        if self.router.prometheus_port:
            wanted[self.router_host].append(
                (
                    "router prometheus",
                    self.router.prometheus_host or router_address,
                    self.router.prometheus_port,
                )
            )
        return wanted

    def resolve_path(self, value: str) -> str:
        """Relative paths in a cluster file are relative to the file's folder."""
        p = Path(value).expanduser()
        if p.is_absolute() or self.source is None:
            return str(p)
        return str((self.source.parent / p).resolve())

    @property
    def model_path(self) -> str:
        return self.resolve_path(self.model.path)

    @property
    def tokenizer_path(self) -> str:
        return self.resolve_path(self.model.tokenizer or self.model.path)

    def secret_values(self) -> set[str]:
        """The secret values this cluster file brings in, to scrub from free text (log tails,
        messages); see :mod:`pytest_pd.redaction`."""
        return redaction.secret_values(self.model_dump(mode="json"))

    @property
    def model_name(self) -> str:
        return self.model.name or Path(self.model.path).name


def merge_defaults(defaults: ServerOptions, server: ServerSpec) -> ServerSpec:
    update: dict[str, Any] = {
        k: getattr(defaults, k)
        for k in defaults.model_fields_set
        if k not in server.model_fields_set and k not in ("extra_args", "env", ENGINE_OPTIONS)
    }
    update["extra_args"] = [*defaults.extra_args, *server.extra_args]
    update["env"] = {**defaults.env, **server.env}
    update[ENGINE_OPTIONS] = {
        key: {**defaults.engine_options.get(key, {}), **server.engine_options.get(key, {})}
        for key in {**defaults.engine_options, **server.engine_options}
    }
    return server.model_copy(update=update)


def _url_host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


# --------------------------------------------------------------------------- messages


def dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


MAX_LISTED_PROBLEMS = 20  # an aliased block repeats its problems once per use


def format_problems(where: str, problems: list[tuple[int, Loc, str]]) -> str:
    listed = sorted(problems, key=lambda p: p[0])[:MAX_LISTED_PROBLEMS]
    body = "\n".join(f"  line {line}, {dotted(loc)}: {msg}" for line, loc, msg in listed)
    if len(problems) > len(listed):
        body += f"\n  … and {len(problems) - len(listed)} more"
    return (
        f"cluster file {where} is invalid ({len(problems)} problem{'s' * (len(problems) != 1)}):\n"
        f"{body}\nFix the fields named above; pytest-pd's documentation lists every key "
        "(Reference: cluster file keys, docs/reference/cluster-file.md)."
    )
