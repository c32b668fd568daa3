"""SGLang, the engine the seed cluster runs. Everything pytest-pd knows of SGLang lives in this
package: its server's command line (:mod:`.argv`), its endpoints (below) and its Prometheus
metrics (:mod:`.metrics`). Every option of a server is a launch flag of its own: SGLang has no
options block in the cluster file."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pytest_pd.cluster import engines
from pytest_pd.cluster.engines.sglang import argv, metrics

if TYPE_CHECKING:
    from pytest_pd.cluster.safe_yaml import Loc
    from pytest_pd.cluster.spec import ClusterSpec, ServerSpec
    from pytest_pd.ttft_breakdown import ServerTimes


class SGLang(engines.NoOptionsBlock):
    name = "sglang"
    server_module = "sglang.launch_server"
    distribution = "sglang"  # the PyPI distribution that provides server_module
    image = "lmsysorg/sglang:latest"  # the container image `pytest-pd manifests` defaults to
    pod_flags: Mapping[str, str] = {
        "bind": "--host",
        "first_gpu": "--base-gpu-id",
        "node_rank": "--node-rank",
        "dist_init_addr": "--dist-init-addr",
    }
    simulated = False
    apis: tuple[str, ...] = ("generate", "completions", "chat")
    flags_probe: str | None = argv.FLAGS_PROBE
    server_reader: Callable[[Sequence[str]], engines.ImportedServer] | None = staticmethod(
        argv.read_server_argv
    )

    # ---------------------------------------------------------------- the cluster file
    def server_argv(
        self,
        spec: ClusterSpec,
        role: Literal["prefill", "decode"],
        server: ServerSpec,
        rank: int,
        *,
        python: str,
    ) -> list[str]:
        own = self.server_args(engines.options(spec, server))
        return argv.server_argv(
            spec,
            role,
            server,
            rank,
            python=python,
            module=self.server_module,
            own_args=own,
            prefill_pp=self.takes_prefill_pp(spec.engine_version),
        )

    def takes_prefill_pp(self, version: str | None) -> bool:
        """Whether a decode server of this version states the prefill's pp size."""
        return argv.takes_prefill_pp(version)

    def uses_gpus(self, argv: Sequence[str]) -> bool:
        return not ("--device" in argv and argv[argv.index("--device") + 1 :][:1] == ["cpu"])

    def exports_metrics(self, server: ServerSpec) -> bool:
        return bool(server.enable_metrics)

    def spec_problems(self, spec: ClusterSpec) -> list[tuple[Loc, str]]:
        """Every prefill server runs one pp size, which each decode server states where this
        version takes it (and, where it does not, states rightly if at all)."""
        pps = {server.pp or 1 for server in spec.servers("prefill")}
        if len(pps) > 1:
            return [(("prefill",), "all prefill servers must use the same pp size")]
        (pp,) = pps
        needed = self.takes_prefill_pp(spec.engine_version)
        why = (
            "renders --disaggregation-prefill-pp"
            if needed
            else "not rendered: this SGLang learns it at bootstrap; only the simulator and the twin read it"
        )
        return [
            (
                ("decode", i, "prefill_pp"),
                f"prefill servers run pp={pp}; this decode server must say `prefill_pp: {pp}` "
                f"({why}), it has {server.prefill_pp or 1}",
            )
            for i, (raw, server) in enumerate(zip(spec.decode, spec.servers("decode"), strict=True))
            if (server.prefill_pp or 1) != pp and (needed or raw.prefill_pp is not None)
        ]

    # ---------------------------------------------------------------- endpoints
    health_path = "/health"
    server_info_path: str | None = "/get_server_info"
    flush_cache: tuple[str, str] | None = ("GET", "/flush_cache")

    def version_of(self, info: Mapping[str, Any]) -> str | None:
        version = info.get("version")
        return f"{self.name} {version}" if version else None

    # ---------------------------------------------------------------- metrics (/metrics)
    gauges: Mapping[str, str] = metrics.GAUGES

    def server_times(self, rows: metrics.Rows) -> ServerTimes | None:
        return metrics.server_times(rows)

    def prefix_cache_hit_rate(self, rows: metrics.Rows) -> float | None:
        return metrics.prefix_cache_hit_rate(rows)


ENGINE = SGLang()
