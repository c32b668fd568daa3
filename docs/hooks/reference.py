"""MkDocs hook: the generated parts of the site, made from the code at build time so that they
cannot drift from it. A page holds a marker line, replaced by what it names:

- ``<!-- reference: cluster-file -->``: every key of a cluster file, level by level, from the
  pydantic schema (pytest_pd/cluster/spec.py): type, default, constraints and the comment beside
  the field in the source;
- ``<!-- reference: cli -->``: every `pytest-pd` command's ``--help``, from its argparse parser;
- ``<!-- reference: pytest-options -->``: the plugin's pytest options and ini keys;
- ``<!-- reference: changelog -->``: the repository's CHANGELOG.md, below its title.
"""

from __future__ import annotations

import inspect
import re
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

MARKER = re.compile(r"^<!-- reference: ([a-z-]+) -->$", re.M)


def _type_name(annotation: Any) -> str:
    text = str(annotation).replace("typing.", "")
    text = re.sub(r"<class '([^']+)'>", r"\1", text)
    text = re.sub(r"Annotated\[(\w+), [^\]]*\]", r"\1", text)  # validators: not a reader's business
    return text.replace("pytest_pd.cluster.spec.", "").replace("NoneType", "None")


_LIMITS = {"Ge": "≥ {}", "Gt": "> {}", "Le": "≤ {}", "Lt": "< {}", "MinLen": "at least {} entry"}


def _limits(metadata: list[Any]) -> str:
    out = []
    for item in metadata:
        kind = type(item).__name__
        values = [getattr(item, a) for a in ("ge", "gt", "le", "lt", "min_length") if hasattr(item, a)]
        if kind in _LIMITS and values:
            out.append(_LIMITS[kind].format(values[0]))
        elif getattr(item, "pattern", None):
            out.append(f"matches `{item.pattern}`")
    return "; ".join(out)


def _default(field: Any) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    return "(below)" if isinstance(value, BaseModel) else f"`{value!r}`"


def _field_comments(model: type[BaseModel]) -> dict[str, str]:
    """The comment after each field's line, or the docstring on the lines below it."""
    out: dict[str, str] = {}
    lines = inspect.getsource(model).splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^    ([a-z_]+): [^#]*?(?:#\s*(.*))?$", line)
        if not m:
            continue
        comment = m.group(2) or ""
        following = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if not comment and following.startswith('"""'):
            doc = []
            for more in lines[i + 1 :]:
                doc.append(more.strip().strip('"'))
                if more.strip().endswith('"""') and (len(doc) > 1 or more.strip().count('"""') == 2):
                    break
            comment = " ".join(d for d in doc if d)
        out[m.group(1)] = comment
    return out


def _models(root: type[BaseModel]) -> list[tuple[str, type[BaseModel]]]:
    """(the key that holds it, model) for the file and every nested level, the top first."""
    seen: list[tuple[str, type[BaseModel]]] = [("(top level)", root)]
    i = 0
    while i < len(seen):
        _, model = seen[i]
        for name, field in model.model_fields.items():
            for arg in [field.annotation, *typing.get_args(field.annotation)]:
                for inner in [arg, *typing.get_args(arg)]:
                    if (
                        isinstance(inner, type)
                        and issubclass(inner, BaseModel)
                        and inner not in [m for _, m in seen]
                    ):
                        seen.append((name, inner))
        i += 1
    return seen


def cluster_file_reference() -> str:
    from pytest_pd.cluster.spec import ClusterSpec

    parts = []
    for key, model in _models(ClusterSpec):
        doc = inspect.cleandoc(model.__dict__.get("__doc__") or "")  # its own, not BaseModel's
        comments = _field_comments(model)
        for base in model.__mro__[1:]:
            if isinstance(base, type) and issubclass(base, BaseModel) and base is not BaseModel:
                comments = {**_field_comments(base), **comments}
        rows = ["| key | type | default | notes |", "| --- | --- | --- | --- |"]
        for name, field in model.model_fields.items():
            if name == "engine_options":
                continue
            limits = _limits(field.metadata)
            note = " ".join(x for x in (comments.get(name, ""), f"({limits})" if limits else "") if x)
            note = note.replace("|", "\\|")
            rows.append(f"| `{name}` | `{_type_name(field.annotation)}` | {_default(field)} | {note} |")
        title = (
            f"### `{key}` ({model.__name__})" if key != "(top level)" else f"### top level ({model.__name__})"
        )
        parts.append("\n".join([title, "", doc, "", *rows, ""]))
    return "\n".join(parts)


def cli_reference() -> str:
    from pytest_pd.cli import command_parsers

    out = []
    for name, sub in command_parsers().items():
        out.append(f"### `pytest-pd {name}`\n\n```text\n{sub.format_help().strip()}\n```\n")
    return "\n".join(out)


def pytest_options_reference() -> str:
    import subprocess
    import sys

    text = subprocess.run(
        [sys.executable, "-m", "pytest", "--help", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    ).stdout
    start = text.index("(pytest-pd):")
    start = text.rindex("\n", 0, start) + 1
    end = text.index("\n\n", start)
    lines = text.splitlines()
    ini = [
        line + ("" if not lines[i + 1].startswith(" " * 24) else " " + lines[i + 1].strip())
        for i, line in enumerate(lines[:-1])
        if line.strip().startswith("pd_")
    ]
    return (
        "```text\n" + text[start:end] + "\n```\n\n"
        "ini keys (`pytest.ini` `[pytest]`, or `[tool.pytest.ini_options]` in pyproject.toml):\n\n"
        "```text\n" + "\n".join(ini) + "\n```\n"
    )


def changelog() -> str:
    text = (Path(__file__).resolve().parents[2] / "CHANGELOG.md").read_text()
    return text.split("\n", 1)[1].lstrip()  # the page has its own title


GENERATORS = {
    "changelog": changelog,
    "cluster-file": cluster_file_reference,
    "cli": cli_reference,
    "pytest-options": pytest_options_reference,
}


def on_page_markdown(markdown: str, **_: Any) -> str:
    return MARKER.sub(lambda m: GENERATORS[m.group(1)](), markdown)
