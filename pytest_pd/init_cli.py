"""`pytest-pd init`: a starter in a team's repository — an acceptance suite with threshold markers,
the simulated candidate and baseline (with the simulator's tokenizer, so it runs anywhere), a
pytest.ini and a nightly CI workflow; ``--from`` adds the cluster file of the team's own launch
lines (``pytest-pd import``). Nothing is overwritten without ``--force``."""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from pytest_pd import __version__
from pytest_pd.cluster.importer import import_cluster
from pytest_pd.cluster.spec_file import EXAMPLES
from pytest_pd.errors import PdError

SIMULATED = ("sim-pp2", "sim-tp8")  # the candidate and its baseline when nothing else is given
_PYTEST_CONFIGS = {
    "pytest.ini": "[pytest]",
    "pyproject.toml": "[tool.pytest",
    "tox.ini": "[pytest]",
    "setup.cfg": "[tool:pytest]",
}


def add_parser(sub: Any) -> None:
    text = "write a starter suite, cluster files, pytest.ini and a nightly workflow into a repository"
    p = sub.add_parser("init", help=text, description=__doc__)
    p.add_argument("directory", nargs="?", type=Path, default=Path("."), help="where (default: here)")
    p.add_argument(
        "--from",
        dest="source",
        help="a script or markdown page with your launch lines: written as clusters/STEM.yaml "
        "(`pytest-pd import`) and named in the nightly workflow",
    )
    p.add_argument("--baseline", help="with --from: the cluster it is compared with (its baseline:)")
    p.add_argument("--force", action="store_true", help="overwrite files that exist")


def _template(name: str, **values: str) -> str:
    return (resources.files("pytest_pd.starter") / name).read_text(encoding="utf-8").format(**values)


def _pytest_config(root: Path) -> Path | None:
    """The file already configuring pytest in ``root``, if any (pytest reads only one)."""
    for name, marker in _PYTEST_CONFIGS.items():
        path = root / name
        if path.is_file() and marker in path.read_text(encoding="utf-8", errors="replace"):
            return path
    return None


def starter_files(
    root: Path, source: str | None = None, baseline: str | None = None
) -> dict[Path, str | bytes]:
    """Every file the starter holds (path under ``root`` → content)."""
    files: dict[Path, str | bytes] = {}
    for name in SIMULATED:
        files[root / "clusters" / f"{name}.yaml"] = (EXAMPLES / f"{name}.yaml").read_text(encoding="utf-8")
    model = EXAMPLES / "models" / "sim-tiny"
    for part in sorted(model.iterdir()):
        files[root / "clusters" / "models" / "sim-tiny" / part.name] = part.read_bytes()
    nightly = SIMULATED[0]
    if source:
        nightly = Path(source).stem
        text = Path(source).read_text(encoding="utf-8")
        files[root / "clusters" / f"{nightly}.yaml"] = import_cluster(
            text, name=nightly, source=source, baseline=baseline
        )
    files[root / "suites" / "test_pd_acceptance.py"] = _template("test_pd_acceptance.py.tmpl")
    if _pytest_config(root) in (None, root / "pytest.ini"):
        files[root / "pytest.ini"] = _template("pytest.ini.tmpl", cluster=SIMULATED[0])
    files[root / ".github" / "workflows" / "pytest-pd-nightly.yml"] = _template(
        "nightly.yml.tmpl", cluster=nightly, version=__version__
    )
    return files


def run(args: argparse.Namespace) -> int:
    root: Path = args.directory
    try:
        files = starter_files(root, args.source, args.baseline)
        wrote, kept = [], []
        for path, content in files.items():
            if path.exists() and not args.force:
                kept.append(path)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
            wrote.append(path)
    except (PdError, OSError, ValueError) as exc:
        print(f"pytest-pd init: {exc}", file=sys.stderr)
        return 2
    for path in wrote:
        print(f"wrote {path}")
    for path in kept:
        print(f"kept  {path} (exists; --force overwrites it)")
    config = _pytest_config(root)
    if config is not None and config != root / "pytest.ini":
        print(
            f"note: {config} configures pytest here; add `pd_cluster = {SIMULATED[0]}` to it, "
            "or pass --cluster"
        )
    print(
        f"next: cd {root} && pytest   (the simulated {SIMULATED[0]} against {SIMULATED[1]}: about a minute)"
    )
    return 0
