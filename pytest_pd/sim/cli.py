"""``python -m pytest_pd.sim``'s command line: sglang.launch_server's flags (unknown ones are
accepted and ignored) plus one ``--sim-*`` flag per :class:`~pytest_pd.sim.model.SimParams`
field."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from typing import Any

from pytest_pd.sim import model
from pytest_pd.sim.app import serve
from pytest_pd.sim.log import log
from pytest_pd.sim.model import SimParams, sim_flag


def _str2bool(v: str | bool) -> bool:
    if isinstance(v, bool):
        return v
    s = v.strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {v!r}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pytest_pd.sim",
        description="Simulated SGLang worker (drop-in for python -m sglang.launch_server).",
    )
    a = p.add_argument
    a(
        "--model-path",
        required=True,
        help="local directory holding tokenizer.json (and optionally config.json)",
    )
    a("--tokenizer-path", default=None)
    a("--served-model-name", default=None)
    a("--host", default="127.0.0.1")
    a("--port", type=int, default=30000)
    a("--disaggregation-mode", choices=["null", "prefill", "decode"], default="null")
    a("--disaggregation-bootstrap-port", type=int, default=8998)
    a("--disaggregation-transfer-backend", default="mooncake")
    a("--disaggregation-ib-device", default=None)
    a("--disaggregation-prefill-pp", type=int, default=1)
    a("--disaggregation-decode-tp", type=int, default=None)
    a("--disaggregation-decode-dp", type=int, default=None)
    a("--tp-size", "--tp", dest="tp_size", type=int, default=1)
    a("--pp-size", "--pp", dest="pp_size", type=int, default=1)
    a("--dp-size", "--dp", dest="dp_size", type=int, default=1)
    a("--chunked-prefill-size", type=int, default=8192)
    a("--max-running-requests", type=int, default=None)
    a("--max-total-tokens", type=int, default=None)
    a("--context-length", type=int, default=None)
    a("--page-size", type=int, default=1)
    a("--mem-fraction-static", type=float, default=None)
    a("--attention-backend", default=None)
    a("--trust-remote-code", action="store_true")
    a("--enable-cache-report", action="store_true")
    a("--disable-radix-cache", action="store_true")
    a("--disable-overlap-schedule", action="store_true")
    a("--incremental-streaming-output", action="store_true")
    a("--stream-interval", type=int, default=1)
    a("--dist-timeout", type=int, default=None)
    a("--nnodes", type=int, default=1)
    a("--node-rank", type=int, default=0)
    a("--dist-init-addr", default=None)
    a("--enable-metrics", action="store_true")
    for f in dataclasses.fields(SimParams):
        typ = (
            f.type
            if isinstance(f.type, type)
            else {"float": float, "int": int, "bool": bool, "str": str}[str(f.type)]
        )
        kw: dict[str, Any] = {
            "dest": "sim_" + f.name,
            "default": f.default,
            "help": f"SimParams.{f.name} (default {f.default!r})",
        }
        if typ is bool:
            kw.update(type=_str2bool, nargs="?", const=True)
        else:
            kw["type"] = typ
        p.add_argument(sim_flag(f.name), **kw)
    return p


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, SimParams, list[str]]:
    args, unknown = build_parser().parse_known_args(argv)
    params = SimParams(**{f.name: getattr(args, "sim_" + f.name) for f in dataclasses.fields(SimParams)})
    if params.speedup <= 0:
        raise SystemExit("--sim-speedup must be > 0")
    if params.fault not in model.FAULTS:
        raise SystemExit(
            f"--sim-fault: unknown fault {params.fault!r}; known: {', '.join(f for f in model.FAULTS if f)}"
        )
    return args, params, unknown


def main(argv: list[str] | None = None) -> int:
    args, params, unknown = parse_args(argv)
    if unknown:
        log(f"ignoring flags the simulator does not model: {' '.join(unknown)}")
    try:
        asyncio.run(serve(args, params))
    except KeyboardInterrupt:
        pass
    except OSError as e:
        print(f"pytest-pd sim: cannot serve on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 1
    return 0
