"""`pytest-pd` command line: render a cluster's commands, hold a cluster up for manual use, list
what pytest-pd runs on a cluster's hosts, tear down what a session left behind, benchmark, and
calibrate the timing model to stored runs, plan topologies, write request traces, write a
starter into a repository, import the launch lines a team already runs as a cluster file."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pytest_pd import bench, bench_args, import_cli, init_cli, manifests_cli, trace_cli
from pytest_pd.cli_args import add_cluster_arguments
from pytest_pd.cluster.commands import render_commands
from pytest_pd.cluster.launchers import launcher_of
from pytest_pd.cluster.locks import HostLock, LocalHostLock, holder_info, local_lock_dir
from pytest_pd.cluster.signals import sigterm_as_interrupt
from pytest_pd.cluster.spec_file import load_cluster
from pytest_pd.cluster.stale_runs import listing, reap_stale
from pytest_pd.cluster.topology import Topology
from pytest_pd.doctor import doctor
from pytest_pd.errors import PdError
from pytest_pd.history import cli as history_cli
from pytest_pd.rundir import new_run_dir
from pytest_pd.twin import cli as twin_cli
from pytest_pd.twin import plan_cli


def _parser() -> argparse.ArgumentParser:
    return _parsers()[0]


def command_parsers() -> dict[str, argparse.ArgumentParser]:
    """Each command's parser by name (the documentation's command-line reference)."""
    return _parsers()[1]


def _parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(prog="pytest-pd", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("commands", "print the launch commands of a cluster, one per line"),
        ("up", "bring a cluster up and hold it until Ctrl-C, printing the router URL"),
        (
            "doctor",
            "what is installed where for a cluster (Python, engine, router, model, GPUs) and what is missing",
        ),
    ):
        p = sub.add_parser(name, help=text, description=text)
        add_cluster_arguments(p)
        if name == "up":
            p.add_argument(
                "--run-dir",
                type=Path,
                default=Path("runs"),
                help="where logs and pid files go (default: ./runs)",
            )
    down = sub.add_parser(
        "down",
        help="tear down what a session left running",
        description="With RUN_DIR: stop every process a session left running there "
        "(--pd-keep-cluster-on-failure; the same verified teardown as at the end of a session) and "
        "fetch the logs. Without: stop every stale run (one whose session died without teardown) "
        "on this machine, or on the hosts of --cluster.",
    )
    down.add_argument(
        "run_dir",
        type=Path,
        metavar="RUN_DIR",
        nargs="?",
        help="the run directory pytest-pd printed when it left the cluster up",
    )
    ps = sub.add_parser(
        "ps",
        help="list what pytest-pd runs on this machine or a cluster's hosts",
        description="list the runs recorded next to the host locks of this machine "
        "(or of the hosts of --cluster): live, kept for debugging or stale, with "
        "their processes",
    )
    for p in (down, ps):
        add_cluster_arguments(
            p,
            flag="--cluster",
            help="look at this cluster's hosts (name or path to a YAML "
            "file) instead of this machine's default lock folder",
        )
    bench_args.add_parser(sub)
    twin_cli.add_parser(sub)
    plan_cli.add_parser(sub)
    trace_cli.add_parser(sub)
    import_cli.add_parser(sub)
    init_cli.add_parser(sub)
    manifests_cli.add_parser(sub)
    history_cli.add_parser(sub)
    return parser, dict(sub.choices)


def _show(text: str) -> None:
    print(text, flush=True)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _down(args: argparse.Namespace) -> int:
    if args.run_dir is None:
        return _machines(args, _reap)
    topology = Topology.adopt(args.run_dir, say=_say)
    topology.down()
    _say(f"{topology.spec.label}: torn down; logs in {args.run_dir}")
    return 0


def _machines(args: argparse.Namespace, act: Callable[[HostLock], None]) -> int:
    """``act`` on the host lock of every machine of --cluster, or of this machine."""
    if args.cluster is None:
        info = holder_info("-", Path(f"(pytest-pd {args.command})"))
        act(LocalHostLock(local_lock_dir(None), "localhost", "this machine", info))
        return 0
    spec = load_cluster(args.cluster, args.cluster_dir)
    launcher = launcher_of(spec)
    if not launcher.manages_processes:
        raise PdError(f"{spec.label} uses launcher: {spec.launcher}: pytest-pd starts nothing there.")
    if launcher.allocates:  # no host locks: the allocations (Slurm's jobs) of the sessions
        launcher.show_allocations(spec, end_stale=args.command == "down", say=_say, show=_show)
        return 0
    topology = Topology(spec, Path(f"(pytest-pd {args.command})"), say=_say)
    try:
        topology.connect_hosts()
        for machine in topology.host_locks():
            act(machine.lock)
    finally:
        topology.down()  # only closes the connections: nothing was started
    return 0


def _ps(lock: HostLock) -> None:
    holder = lock.holder_now()
    print(f"{lock.label}: " + (f"in use by {holder}" if holder else "free"))
    print("\n".join(listing(lock.ledger(), holder)) or "  no run recorded", flush=True)


def _reap(lock: HostLock) -> None:
    holder = lock.holder_now()
    if holder is not None:
        _say(f"{lock.label} is in use by a live session ({holder}); its runs are not stale.")
        return
    lock.acquire(0.0, _say)
    try:
        stopped = reap_stale(lock.ledger(), _say)
    finally:
        lock.release()
    _say(f"{lock.label}: " + (f"{stopped} stale run(s) stopped" if stopped else "nothing stale"))


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
    if args.command == "calibrate":
        return twin_cli.run(args)
    if args.command == "plan":
        return plan_cli.run(args)
    if args.command == "trace":
        return trace_cli.run(args)
    if args.command == "init":
        return init_cli.run(args)
    if args.command == "import":
        return import_cli.run(args)
    if args.command == "manifests":
        return manifests_cli.run(args)
    if args.command == "history":
        return history_cli.run(args)
    try:
        if args.command == "commands":
            spec = load_cluster(args.cluster, args.cluster_dir)
            sys.stdout.write(render_commands(spec, local_python=sys.executable))
            return 0
        if args.command == "down":
            with sigterm_as_interrupt():
                return _down(args)
        if args.command == "ps":
            return _machines(args, _ps)
        if args.command == "doctor":
            return doctor(load_cluster(args.cluster, args.cluster_dir))
        return _up(args)
    except PdError as exc:
        print(f"pytest-pd: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
