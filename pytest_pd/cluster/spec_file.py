"""Reading a cluster file: find it by name, parse its YAML safely, validate it (schema, then the
rules that span fields), let its engine read the files its options name. Every error names the
file, the line and the field, and says what is allowed. Reading and parsing are bounded in size,
time and memory whatever the file holds (:mod:`pytest_pd.cluster.safe_yaml`).
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import BaseModel, ValidationError

from pytest_pd.cluster import engines, safe_yaml, spec_rules
from pytest_pd.cluster.safe_yaml import Loc
from pytest_pd.cluster.spec import ENGINE_OPTIONS, ClusterSpec, file_loc, format_problems
from pytest_pd.errors import ClusterFileError


def _unwrap(annotation: Any) -> Any:
    """Strip Optional/Annotated layers off a type annotation."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The pydantic model class that holds the mapping at ``loc`` (for 'allowed keys')."""
    current: Any = ClusterSpec
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return None
            current = field.annotation
        else:
            args = typing.get_args(current)
            if not args:
                return None
            current = args[-1]
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _describe(err: Mapping[str, Any]) -> str:
    loc: Loc = tuple(err["loc"])
    kind = err["type"]
    value = err.get("input")
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        allowed = ", ".join(k for k in model.model_fields if k != ENGINE_OPTIONS) if model else "?"
        return f"unknown key {loc[-1]!r}; allowed here: {allowed}"
    if kind == "missing":
        return "required field is missing"
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    message = err["msg"].replace("Input should be", "expected").replace("Value error, ", "")
    return f"{message}, got {shown} ({type(value).__name__})"


# --------------------------------------------------------------------------- entry points


def parse_cluster(text: str, source: Path) -> ClusterSpec:
    """Parse and validate the text of a cluster file; ``source`` names it in errors."""
    where = str(source)
    document = safe_yaml.load(text, where)
    if not isinstance(document.data, dict):
        raise ClusterFileError(
            f"{where}:1: a cluster file must be a YAML mapping (name:, hosts:, prefill:, decode:, "
            "router:, …); pytest-pd's documentation lists every key (Reference: cluster file keys)."
        )
    if document.duplicate_keys:
        raise ClusterFileError(format_problems(where, document.duplicate_keys))
    try:
        spec = ClusterSpec.model_validate(document.data)
    except ValidationError as exc:
        found = [
            (document.line_of(file_loc(e["loc"])), file_loc(e["loc"]), _describe(e)) for e in exc.errors()
        ]
        raise ClusterFileError(format_problems(where, found)) from None
    spec._source = source
    spec._line_of = document.line_of
    names = spec_rules.name_problems(spec)
    if names:
        raise spec.file_error(names)
    folder = source.parent if source.name else Path.cwd()
    engine = engines.engine(spec.engine)
    read = [
        (loc + (key,), why)
        for loc, block in spec.option_blocks()
        if block
        for key, why in engine.read_option_files(block, folder)
    ]
    if read:
        raise spec.file_error(read)
    semantic = spec_rules.problems(spec, source.parent if source.name else None)
    if semantic:
        raise spec.file_error(semantic)
    return spec


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
EXAMPLES = Path(str(resources.files("pytest_pd.examples") / "clusters"))
"""The cluster files shipped with pytest-pd (the repository's clusters/, in the wheel as package
data); a name not found in the cluster folder is looked up here."""


def _known_clusters(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.yaml") if p.is_file()) if folder.is_dir() else []


def _not_a_cluster_file(path: Path, problem: str) -> ClusterFileError:
    """``path``, given as a cluster file, is a folder, a FIFO, a dangling link, …"""
    known = _known_clusters(path) if path.is_dir() else []
    if known:
        files = ", ".join(f"{path / k}.yaml" for k in known[:5]) + (", …" if len(known) > 5 else "")
        return ClusterFileError(
            f"cluster file {path} {problem}; pass one of its cluster files "
            f"({files}), or a cluster name with --cluster-dir={path}."
        )
    return ClusterFileError(f"cluster file {path} {problem}; check the path.")


def find_cluster_file(name_or_path: str, cluster_dir: Path) -> Path:
    """A cluster is named by its file stem in ``cluster_dir`` (else among the :data:`EXAMPLES`)
    or by a path to a YAML file."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or "/" in name_or_path:
        problem = safe_yaml.path_problem(candidate)
        if problem is None:
            return candidate.resolve()
        raise _not_a_cluster_file(candidate, problem)
    if not _NAME.match(name_or_path):
        raise ClusterFileError(f"{name_or_path!r} is not a cluster name (letters, digits, . _ -).")
    path = cluster_dir / f"{name_or_path}.yaml"
    problem = safe_yaml.path_problem(path)
    if problem is None:
        return path.resolve()
    if problem != safe_yaml.MISSING:  # there but not a file, or behind a locked folder
        raise ClusterFileError(
            f"cluster {name_or_path!r}: {path} {problem}; check that file and --cluster-dir ({cluster_dir})."
        )
    example = EXAMPLES / f"{name_or_path}.yaml"
    if example.is_file():  # shipped with pytest-pd (sim-pp2, …): found from any folder
        return example.resolve()
    raise ClusterFileError(
        f"unknown cluster {name_or_path!r}: no file {path}. Known clusters in {cluster_dir}: "
        f"{', '.join(_known_clusters(cluster_dir)) or 'none'}; shipped with pytest-pd: "
        f"{', '.join(_known_clusters(EXAMPLES))}. Pass --cluster-dir to look elsewhere, or add {path} "
        "(`pytest-pd init` writes a starter, `pytest-pd import` one from your launch commands)."
    )


def load_cluster(name_or_path: str, cluster_dir: Path) -> ClusterSpec:
    path = find_cluster_file(name_or_path, cluster_dir)
    return parse_cluster(safe_yaml.read_text(path), path)
