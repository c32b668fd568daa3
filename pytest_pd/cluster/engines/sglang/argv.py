"""SGLang's server command line (``python -m sglang.launch_server``) from a cluster file's server
entry: each structured field is the flag of the same meaning; ``extra_args`` follow verbatim.

Rendered for one SGLang version (the cluster file's ``engine_version``, else the one found on the
hosts at bring-up, else the newest known) where SGLang's flags changed between versions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from packaging.version import InvalidVersion, Version

from pytest_pd.cluster.engines import ImportedServer
from pytest_pd.cluster.flags import flag, read_flags
from pytest_pd.cluster.spec import ServerSpec

if TYPE_CHECKING:
    from pytest_pd.cluster.spec import ClusterSpec


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


_LEADING = (
    ("transfer_backend", "--disaggregation-transfer-backend"),
    ("ib_device", "--disaggregation-ib-device"),
)
_TRAILING = (
    ("tp", "--tp-size"),
    ("pp", "--pp-size"),
    ("dp", "--dp-size"),
    ("base_gpu_id", "--base-gpu-id"),
    ("disable_overlap_schedule", "--disable-overlap-schedule"),
    ("trust_remote_code", "--trust-remote-code"),
    ("page_size", "--page-size"),
    ("attention_backend", "--attention-backend"),
    ("mem_fraction_static", "--mem-fraction-static"),
    ("chunked_prefill_size", "--chunked-prefill-size"),
    ("context_length", "--context-length"),
    ("max_running_requests", "--max-running-requests"),
    ("enable_cache_report", "--enable-cache-report"),
    ("enable_metrics", "--enable-metrics"),
    ("dist_timeout", "--dist-timeout"),
)
"""The server options rendered as one flag each, in the order rendered (around the server's own
address and ports); the flags :func:`read_server_argv` reads back into the same fields."""
SWITCHES = frozenset(
    name for field, name in _TRAILING if ServerSpec.model_fields[field].annotation == (bool | None)
)
"""Of those, the flags that take no value: the fields that are switches in the cluster file."""


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
    for field, name in _LEADING:
        flag(argv, name, getattr(server, field))
    if role == "prefill":
        flag(argv, "--disaggregation-bootstrap-port", server.bootstrap_port)
    elif prefill_pp:
        flag(argv, "--disaggregation-prefill-pp", server.prefill_pp)
    flag(argv, "--host", server.listen or spec.host_address(node))
    flag(argv, "--port", server.port)
    for field, name in _TRAILING:
        flag(argv, name, getattr(server, field))
    if len(server.node_hosts) > 1:
        flag(argv, "--nnodes", len(server.node_hosts))
        flag(argv, "--node-rank", rank)
        flag(argv, "--dist-init-addr", server.dist_init_addr)
    argv.extend(server.extra_args)
    argv.extend(own_args)
    return argv


_PLACED = ("--model-path", "--disaggregation-mode", "--host", "--nnodes", "--node-rank")
"""Flags the cluster file says elsewhere than in the server's fields (the model, the role, the
host and the nodes a server spans)."""
_READ = {
    **{name: field for field, name in (*_LEADING, *_TRAILING)},
    "--disaggregation-bootstrap-port": "bootstrap_port",
    "--disaggregation-prefill-pp": "prefill_pp",
    "--port": "port",
    "--dist-init-addr": "dist_init_addr",
}


def read_server_argv(args: Sequence[str]) -> ImportedServer:
    """A server command line (what follows ``-m sglang.launch_server``) as the cluster-file
    fields that render it: every flag :func:`server_argv` renders goes back to its field, the
    rest is kept in order as ``extra_args``. Raises ``ValueError`` for a flag without its value."""
    fields: dict[str, Any] = {}
    out = ImportedServer(role="", fields=fields, extra_args=[])
    for name, value in read_flags(args, {*_READ, *_PLACED}, SWITCHES):
        if name is None or value is None:  # an argument of its own; a switch given alone
            if name is None:
                out.extra_args.append(str(value))
            else:
                fields[_READ[name]] = True
        elif name in _READ:
            fields[_READ[name]] = value
            if name == "--disaggregation-prefill-pp":
                out.newest_version = str(PREFILL_PP_LAST)
        elif name == "--model-path":
            out.model_path = value
        elif name == "--disaggregation-mode":
            out.role = value
        elif name == "--host":
            out.host = value
        elif name == "--nnodes":
            out.nnodes = int(value)
        else:
            out.node_rank = int(value)
    return out
