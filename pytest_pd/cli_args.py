"""Command-line arguments the ``pytest-pd`` subcommands share: which cluster file to use."""

from __future__ import annotations

import argparse
from pathlib import Path

CLUSTER_HELP = "cluster name (file stem in --cluster-dir) or path to a YAML file"


def add_cluster_arguments(
    parser: argparse.ArgumentParser, *, flag: str | None = None, help: str = CLUSTER_HELP
) -> None:
    """The cluster (positional ``cluster``, or ``flag`` such as ``--cluster`` when it is optional)
    and ``--cluster-dir``, the folder its name is looked up in."""
    if flag is None:
        parser.add_argument("cluster", help=help)
    else:
        parser.add_argument(flag, dest="cluster", help=help)
    parser.add_argument(
        "--cluster-dir",
        type=Path,
        default=Path("clusters"),
        help="folder holding cluster files (default: ./clusters)",
    )
