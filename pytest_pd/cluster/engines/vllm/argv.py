"""vLLM's server command line (``python -m vllm.entrypoints.openai.api_server``) from a cluster
file's server entry, and the entry's fields vLLM has no equivalent for.

Disaggregation is vLLM's KV connector: ``transfer_backend: nixl`` renders ``--kv-transfer-config``
with ``NixlConnector``, the prefill as ``kv_producer`` and the decode as ``kv_consumer`` (the roles
vLLM 0.32 wants; ``kv_both`` is deprecated there), the KV buffer on the CPU when the server's
environment says ``VLLM_TARGET_DEVICE: cpu`` (vLLM's own name for its CPU build). NIXL needs no
bootstrap port; each server's side channel port is its own ``VLLM_NIXL_SIDE_CHANNEL_PORT`` (the
server's ``env:`` in the cluster file)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from pytest_pd.cluster.flags import flag

if TYPE_CHECKING:
    from pytest_pd.cluster.safe_yaml import Loc
    from pytest_pd.cluster.spec import ClusterSpec, ServerSpec

CONNECTORS = {"nixl": "NixlConnector", "mooncake": "MooncakeConnector"}
KV_ROLES = {"prefill": "kv_producer", "decode": "kv_consumer"}

# server fields that are SGLang launch flags with no vLLM counterpart: (field, what to do instead)
UNSUPPORTED = {
    "ib_device": "NIXL picks its transport (UCX); set UCX_NET_DEVICES in the server's env",
    "bootstrap_port": "NIXL needs none; each server's VLLM_NIXL_SIDE_CHANNEL_PORT goes in its env",
    "prefill_pp": "vLLM's decode learns the prefill's layout from the KV connector",
    "base_gpu_id": "set CUDA_VISIBLE_DEVICES in the server's env",
    "disable_overlap_schedule": "vLLM has no overlap scheduler switch",
    "attention_backend": "set VLLM_ATTENTION_BACKEND in the server's env",
    "dist_timeout": "vLLM has no such flag",
    "dist_init_addr": "multi-node vLLM runs on Ray; not rendered by pytest-pd yet",
}


def kv_transfer_config(spec: ClusterSpec, role: Literal["prefill", "decode"], server: ServerSpec) -> str:
    cpu = {**spec.env, **server.env}.get("VLLM_TARGET_DEVICE") == "cpu"
    config = {
        "kv_connector": CONNECTORS[server.transfer_backend or "nixl"],
        "kv_role": KV_ROLES[role],
        "kv_buffer_device": "cpu" if cpu else "cuda",
    }
    return json.dumps(config, separators=(",", ":"))


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
    argv = [python, "-m", module]
    flag(argv, "--model", spec.model_path)
    flag(argv, "--served-model-name", spec.model_name)
    flag(argv, "--host", server.listen or spec.host_address(server.node_hosts[rank]))
    flag(argv, "--port", server.port)
    flag(argv, "--tensor-parallel-size", server.tp)
    flag(argv, "--pipeline-parallel-size", server.pp)
    flag(argv, "--data-parallel-size", server.dp)
    flag(argv, "--trust-remote-code", server.trust_remote_code)
    flag(argv, "--block-size", server.page_size)
    flag(argv, "--gpu-memory-utilization", server.mem_fraction_static)
    flag(argv, "--max-num-batched-tokens", server.chunked_prefill_size)
    flag(argv, "--max-model-len", server.context_length)
    flag(argv, "--max-num-seqs", server.max_running_requests)
    flag(argv, "--kv-transfer-config", kv_transfer_config(spec, role, server))
    argv.extend(server.extra_args)
    argv.extend(own_args)
    return argv


def spec_problems(spec: ClusterSpec) -> list[tuple[Loc, str]]:
    """Fields of the file's server entries vLLM cannot honour, and KV connectors it lacks."""
    problems: list[tuple[Loc, str]] = []
    roles: tuple[Literal["prefill", "decode"], ...] = ("prefill", "decode")
    for role in roles:
        for i, merged in enumerate(spec.servers(role)):
            for field, instead in UNSUPPORTED.items():
                if getattr(merged, field) not in (None, False):
                    problems.append(((role, i, field), f"engine: vllm has no {field}: {instead}"))
            backend = merged.transfer_backend or "nixl"
            if backend not in CONNECTORS:
                known = ", ".join(CONNECTORS)
                problems.append(((role, i, "transfer_backend"), f"vLLM's KV connectors here: {known}"))
            if len(merged.node_hosts) > 1:
                problems.append(((role, i, "hosts"), "multi-node vLLM servers are not rendered yet"))
    return problems
