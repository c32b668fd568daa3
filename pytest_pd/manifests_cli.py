"""`pytest-pd manifests NAME --format lws|rbg`: the cluster as Kubernetes manifests to
``kubectl apply`` (LeaderWorkerSets or a RoleBasedGroup, a router Deployment or role, Services), the
containers running exactly the commands `pytest-pd commands NAME` prints but for the addresses a pod
needs; with ``-o DIR`` also a ``launcher: attach`` cluster file to test the deployed cluster."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pytest_pd.cli_args import add_cluster_arguments
from pytest_pd.cluster.spec_file import load_cluster
from pytest_pd.errors import PdError
from pytest_pd.manifests.attach import attach_name, attach_yaml, default_router_url
from pytest_pd.manifests.naming import DEFAULT_NAMESPACE, Target
from pytest_pd.manifests.render import FORMATS, render, to_yaml


def add_parser(sub: Any) -> None:
    text = "render a cluster as Kubernetes manifests (LeaderWorkerSet or RoleBasedGroup)"
    p = sub.add_parser("manifests", help=text, description=__doc__)
    add_cluster_arguments(p)
    p.add_argument("--format", required=True, help=f"{' or '.join(FORMATS)}")
    p.add_argument("--image", help="container image (default: the engine's, e.g. lmsysorg/sglang:latest)")
    p.add_argument("--namespace", default=DEFAULT_NAMESPACE, help=f"(default: {DEFAULT_NAMESPACE})")
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        help="write DIR/NAME.FORMAT.yaml and the attach cluster file DIR/NAME-k8s.yaml "
        "(default: print the manifests)",
    )
    p.add_argument(
        "--router-url",
        help="the router's URL in the attach cluster file (default: its Service inside the cluster, "
        "http://NAME-router-svc.NAMESPACE.svc:PORT)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        spec = load_cluster(args.cluster, args.cluster_dir)
        target = Target(namespace=args.namespace, image=args.image)
        manifests = to_yaml(render(spec, args.format, target))
        if args.output is None:
            sys.stdout.write(manifests)
            return 0
        attach = attach_yaml(
            spec, target.namespace, args.router_url or default_router_url(spec, args.namespace)
        )
        args.output.mkdir(parents=True, exist_ok=True)
        path = args.output / f"{spec.label}.{args.format}.yaml"
        attach_path = args.output / f"{attach_name(spec)}.yaml"
        path.write_text(manifests)
        attach_path.write_text(attach)
    except (PdError, OSError) as exc:
        print(f"pytest-pd manifests: {exc}", file=sys.stderr)
        return 2
    print(f"{path}: kubectl apply -f {path}")
    print(f"{attach_path}: pytest suites/ --cluster={attach_path}  (launcher: attach)")
    return 0
