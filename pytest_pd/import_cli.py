"""`pytest-pd import`: a team's existing launch lines (a shell script or a markdown page) as a
cluster file that renders those exact commands back (:mod:`pytest_pd.cluster.importer`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pytest_pd.cluster.importer import import_cluster
from pytest_pd.errors import PdError


def add_parser(sub: Any) -> None:
    text = "write a cluster file from launch lines you already run (a shell script or markdown page)"
    p = sub.add_parser("import", help=text, description=__doc__)
    p.add_argument(
        "source",
        help="the script or markdown page with the `python -m sglang.launch_server …` and "
        "`python -m sglang_router.launch_router …` lines of ONE topology (- for standard input)",
    )
    p.add_argument(
        "--name", help="the cluster's name (default: the output file's stem, else the source file's)"
    )
    p.add_argument("--baseline", help="the cluster this one is compared with (written as baseline:)")
    p.add_argument(
        "--engine-version",
        help="the engine version those commands run (written as engine_version:; default: none, "
        "or the newest that takes every flag when some flag was dropped by later versions)",
    )
    p.add_argument(
        "--cluster-dir",
        type=Path,
        default=Path("clusters"),
        help="where to write NAME.yaml (default: ./clusters)",
    )
    p.add_argument("-o", "--output", type=Path, help="the file to write instead (- for standard output)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")


def run(args: argparse.Namespace) -> int:
    try:
        text = sys.stdin.read() if args.source == "-" else Path(args.source).read_text(encoding="utf-8")
        to_file = args.output is not None and args.output != Path("-")
        name = args.name or (
            args.output.stem if to_file else "imported" if args.source == "-" else Path(args.source).stem
        )
        if to_file and args.output.stem != name:
            raise PdError(
                f"a cluster's name is its file's stem: name it {args.output.stem!r} or write {name}.yaml"
            )
        out = import_cluster(
            text, name=name, source=args.source, baseline=args.baseline, engine_version=args.engine_version
        )
        if args.output == Path("-"):
            sys.stdout.write(out)
            return 0
        target = args.output or args.cluster_dir / f"{name}.yaml"
        if target.exists() and not args.force:
            raise PdError(f"{target} exists; pass --force to overwrite it, or -o another file")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(out, encoding="utf-8")
    except (PdError, OSError, ValueError) as exc:
        where = "" if isinstance(exc, OSError) else f"{args.source}: "
        print(f"pytest-pd import: {where}{exc}", file=sys.stderr)
        return 2
    print(
        f"{target}: cluster {name}; `pytest-pd commands {target}` renders the commands of {args.source} back"
    )
    return 0
