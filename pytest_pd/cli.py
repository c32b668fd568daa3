"""`pytest-pd` command line: render a cluster's commands, or hold a cluster up for manual use."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pytest_pd import bench
from pytest_pd.cluster.commands import render_commands
from pytest_pd.cluster.spec import load_cluster
from pytest_pd.cluster.topology import Topology, sigterm_as_interrupt
from pytest_pd.errors import PdError
from pytest_pd.rundir import new_run_dir


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pytest-pd", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("commands", "print the launch commands of a cluster, one per line"),
        ("up", "bring a cluster up and hold it until Ctrl-C, printing the router URL"),
    ):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("cluster", help="cluster name (file stem in --cluster-dir) or path to a YAML file")
        p.add_argument("--cluster-dir", type=Path, default=Path("clusters"),
                       help="folder holding cluster files (default: ./clusters)")
        if name == "up":
            p.add_argument("--run-dir", type=Path, default=Path("runs"),
                           help="where logs and pid files go (default: ./runs)")
    down = sub.add_parser("down", help="tear down a cluster a session left running "
                          "(--pd-keep-cluster-on-failure)",
                          description="stop every process a session left running in RUN_DIR "
                          "(the same verified teardown as at the end of a session) and fetch the logs")
    down.add_argument("run_dir", type=Path, metavar="RUN_DIR",
                      help="the run directory pytest-pd printed when it left the cluster up")
    bench.add_parser(sub)
    return parser


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _down(args: argparse.Namespace) -> int:
    topology = Topology.adopt(args.run_dir, say=_say)
    topology.down()
    _say(f"{topology.spec.label}: torn down; logs in {args.run_dir}")
    return 0


def _up(args: argparse.Namespace) -> int:
    spec = load_cluster(args.cluster, args.cluster_dir)
    run_dir = new_run_dir(args.run_dir, spec.label)
    say = _say
    with sigterm_as_interrupt():
        topology = Topology(spec, run_dir, say=say)
        try:
            with topology:
                print(topology.router_url, flush=True)
                say(f"logs in {run_dir}; press Ctrl-C to tear down")
                while True:
                    dead = topology.dead()
                    if dead:
                        say("a process died, tearing down:\n" + "\n".join(dead))
                        return 1
                    time.sleep(1.0)
        except KeyboardInterrupt:
            say(f"{spec.label}: torn down")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "bench":
        return bench.run(args)
    try:
        if args.command == "commands":
            spec = load_cluster(args.cluster, args.cluster_dir)
            sys.stdout.write(render_commands(spec, local_python=sys.executable))
            return 0
        if args.command == "down":
            with sigterm_as_interrupt():
                return _down(args)
        return _up(args)
    except PdError as exc:
        print(f"pytest-pd: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
