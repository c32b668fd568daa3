"""SGLang's server command line (``python -m sglang.launch_server``) from a cluster file's server
entry: each structured field is the flag of the same meaning; ``extra_args`` follow verbatim.

Rendered for one SGLang version (the cluster file's ``engine_version``, else the one found on the
hosts at bring-up, else the newest known) where SGLang's flags changed between versions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from packaging.version import InvalidVersion, Version

from pytest_pd.cluster.flags import flag

if TYPE_CHECKING:
    from pytest_pd.cluster.spec import ClusterSpec, ServerSpec


PREFILL_PP_LAST = Version("0.5.9")
"""The last SGLang that takes ``--disaggregation-prefill-pp`` (a decode server stating the prefill's
pp size): 0.5.10 dropped it (the decode learns it from the prefill's bootstrap server) without a
deprecation, and refuses it as an unrecognized argument."""


FLAGS_PROBE = r"""
import argparse, json, sys
from sglang.srt.server_args import ServerArgs
parser = argparse.ArgumentParser(exit_on_error=False)
ServerArgs.add_cli_args(parser)
out = []
for args in json.loads(sys.argv[1]):
    try:
        out.append(parser.parse_known_args(args)[1])
    except (argparse.ArgumentError, SystemExit):
        out.append([])  # a value it refuses: the server's own start-up says which, in its log
print(json.dumps(out))
"""
"""SGLang's own parser (``ServerArgs.add_cli_args``, what ``sglang.launch_server`` builds) asked
which arguments it does not know (see :attr:`pytest_pd.cluster.engines.Engine.flags_probe`)."""


def takes_prefill_pp(version: str | None) -> bool:
    """Whether SGLang ``version`` (None: the newest known) takes ``--disaggregation-prefill-pp``."""
    if version is None:
        return False
    try:
        return Version(version) <= PREFILL_PP_LAST
    except InvalidVersion:
        return False


def server_argv(
    spec: ClusterSpec,
    role: Literal["prefill", "decode"],
    server: ServerSpec,
    rank: int,
    *,
    python: str,
    module: str,
    own_args: Sequence[str] = (),
    prefill_pp: bool = False,
) -> list[str]:
    """``prefill_pp``: render a decode server's ``--disaggregation-prefill-pp`` (see
    :func:`takes_prefill_pp`)."""
    node = server.node_hosts[rank]
    argv = [python, "-m", module]
    flag(argv, "--model-path", spec.model_path)
    flag(argv, "--disaggregation-mode", role)
    flag(argv, "--disaggregation-transfer-backend", server.transfer_backend)
    flag(argv, "--disaggregation-ib-device", server.ib_device)
    if role == "prefill":
        flag(argv, "--disaggregation-bootstrap-port", server.bootstrap_port)
    elif prefill_pp:
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
