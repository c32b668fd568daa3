"""SGLang's server command line (``python -m sglang.launch_server``) from a cluster file's server
entry: each structured field is the flag of the same meaning; ``extra_args`` follow verbatim."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from pytest_pd.cluster.flags import flag

if TYPE_CHECKING:
    from pytest_pd.cluster.spec import ClusterSpec, ServerSpec


def server_argv(
    spec: ClusterSpec,
    role: Literal["prefill", "decode"],
    server: ServerSpec,
    rank: int,
    *,
    python: str,
    module: str,
    own_args: Sequence[str] = (),
) -> list[str]:
    node = server.node_hosts[rank]
    argv = [python, "-m", module]
    flag(argv, "--model-path", spec.model_path)
    flag(argv, "--disaggregation-mode", role)
    flag(argv, "--disaggregation-transfer-backend", server.transfer_backend)
    flag(argv, "--disaggregation-ib-device", server.ib_device)
    if role == "prefill":
        flag(argv, "--disaggregation-bootstrap-port", server.bootstrap_port)
    else:
        flag(argv, "--disaggregation-prefill-pp", server.prefill_pp)
    flag(argv, "--host", server.listen or spec.host_address(node))
    flag(argv, "--port", server.port)
    flag(argv, "--tp-size", server.tp)
    flag(argv, "--pp-size", server.pp)
    flag(argv, "--dp-size", server.dp)
    flag(argv, "--base-gpu-id", server.base_gpu_id)
    flag(argv, "--disable-overlap-schedule", server.disable_overlap_schedule)
    flag(argv, "--trust-remote-code", server.trust_remote_code)
    flag(argv, "--page-size", server.page_size)
    flag(argv, "--attention-backend", server.attention_backend)
    flag(argv, "--mem-fraction-static", server.mem_fraction_static)
    flag(argv, "--chunked-prefill-size", server.chunked_prefill_size)
    flag(argv, "--context-length", server.context_length)
    flag(argv, "--max-running-requests", server.max_running_requests)
    flag(argv, "--enable-cache-report", server.enable_cache_report)
    flag(argv, "--enable-metrics", server.enable_metrics)
    flag(argv, "--dist-timeout", server.dist_timeout)
    if len(server.node_hosts) > 1:
        flag(argv, "--nnodes", len(server.node_hosts))
        flag(argv, "--node-rank", rank)
        flag(argv, "--dist-init-addr", server.dist_init_addr)
    argv.extend(server.extra_args)
    argv.extend(own_args)
    return argv
