"""A stored run as the history sees it (:class:`StoredRun`): where it is, what it measured (the
numeric metrics and each repeat's values) and the facts of how it ran (:func:`run_facts`: versions,
commands, commit, model, hosts), small enough that two years of nights fit in memory. Pure."""

from __future__ import annotations

import math
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_pd.record import RunRecord


@dataclass(frozen=True)
class StoredRun:
    path: str
    cluster: str
    key: str  # RunRecord.key: the workload's id, or a capacity search's key
    model: str | None
    started_at: float
    session: str | None = None
    source: str = "suite"
    baseline_mark: bool = False
    failure: str | None = None  # "stage: message" of a run that did not complete
    problems: tuple[str, ...] = ()
    metrics: Mapping[str, float] = field(default_factory=dict)
    samples: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    facts: Mapping[str, str] = field(default_factory=dict)

    @property
    def sound(self) -> bool:
        """Completed, and nothing made its numbers unusable (failed requests, mismatches)."""
        return self.failure is None and not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "cluster": self.cluster,
            "key": self.key,
            "model": self.model,
            "started_at": self.started_at,
            "session": self.session,
            "source": self.source,
            "baseline_mark": self.baseline_mark,
            "failure": self.failure,
            "problems": list(self.problems),
            "metrics": dict(self.metrics),
            "samples": {k: list(v) for k, v in self.samples.items()},
            "facts": dict(self.facts),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StoredRun:
        return cls(
            path=str(data["path"]),
            cluster=str(data["cluster"]),
            key=str(data["key"]),
            model=data.get("model"),
            started_at=float(data["started_at"]),
            session=data.get("session"),
            source=str(data.get("source") or "suite"),
            baseline_mark=bool(data.get("baseline_mark")),
            failure=data.get("failure"),
            problems=tuple(data.get("problems") or ()),
            metrics={k: float(v) for k, v in (data.get("metrics") or {}).items()},
            samples={k: tuple(float(x) for x in v) for k, v in (data.get("samples") or {}).items()},
            facts={k: str(v) for k, v in (data.get("facts") or {}).items()},
        )


def _numbers(values: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in values.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[key] = float(value)
    return out


def summarize(record: RunRecord, path: str | None = None) -> StoredRun:
    failure = record.failure
    return StoredRun(
        path=path or record.path or "",
        cluster=record.cluster.name,
        key=record.key,
        model=record.model.name,
        started_at=record.started_at,
        session=record.session,
        source=record.source,
        baseline_mark=record.baseline_mark,
        failure=f"{failure.stage}: {failure.message}" if failure else None,
        problems=tuple(record.problems),
        metrics=_numbers(record.metrics),
        samples={k: tuple(v) for k, v in record.samples.items() if all(math.isfinite(x) for x in v)},
        facts=run_facts(record),
    )


# ---------------------------------------------------------------------------- facts

COMMAND_PREFIX = "command "
LAUNCH_FACT = "launch"  # the launch identity (ClusterInfo.launch): a stored baseline must match it
ENV_PREFIX = "env "
VERSION_PREFIX = "version "


def command_lines(commands: str | None) -> dict[str, str]:
    """{process: its command line} of a record's rendered commands (``pytest-pd commands``'
    text: a ``# NAME on HOST (ADDRESS)`` line before each command), and {"env NAME": value} for
    the environment exported before them."""
    out: dict[str, str] = {}
    process = None
    for line in (commands or "").splitlines():
        text = line.strip()
        if not text:
            continue
        if text.startswith("#"):
            head = text.lstrip("# ").split(" on ", 1)
            process = head[0].strip() if len(head) == 2 else None
            continue
        if text.startswith("export "):
            name, _, value = text[len("export ") :].partition("=")
            out[ENV_PREFIX + name.strip()] = value
            continue
        if process is not None:
            out[COMMAND_PREFIX + process] = text
            process = None
    return out


def run_facts(record: RunRecord) -> dict[str, str]:
    """What a run recorded of how it ran, flat (name → value), for "what changed" between two
    runs: versions (pytest-pd, Python, the router, each server's engine), the suite's commit and
    its subject, the model, the cluster's engine and launcher, each host's address and GPUs, the
    rendered launch commands and exported environment, the harness host, the workload's settings."""
    env = record.environment
    facts: dict[str, str | None] = {
        "pytest-pd": env.pytest_pd,
        "python": env.python,
        "router": env.router,
        "commit": env.git_commit,
        "commit subject": env.git_subject,
        "model": record.model.name,
        "model path": record.model.path,
        "engine": record.cluster.engine,
        "launcher": record.cluster.launcher,
        "harness host": env.harness_host,
    }
    for process, version in sorted(env.engines.items()):
        facts[VERSION_PREFIX + process] = version
    spec = record.cluster.spec or {}
    for host, info in sorted((spec.get("hosts") or {}).items()):
        if isinstance(info, Mapping):
            facts[f"host {host}"] = str(info.get("address"))
    for host, gpu in sorted(env.gpus.items()):
        facts[f"gpus {host}"] = str(gpu)
    facts.update(command_lines(record.cluster.commands))
    facts[LAUNCH_FACT] = record.cluster.launch
    for name, value in record.workload.to_dict().items():  # the same id, other settings
        if name != "id" and value is not None:
            facts[f"workload {name}"] = str(value)
    return {k: str(v) for k, v in facts.items() if v is not None and v != ""}


def command_flags(line: str) -> dict[str, str]:
    """A command line's options: {"--flag": "value"} ("" for a switch; repeated values joined by
    a space), and {"program": the words before the first option}."""
    try:
        words = shlex.split(line)
    except ValueError:
        words = line.split()
    out: dict[str, str] = {}
    program: list[str] = []
    flag = None
    for word in words:
        if word.startswith("--"):
            name, eq, value = word.partition("=")
            flag = name
            out[flag] = value if eq else ""
            if eq:
                flag = None
        elif flag is not None:
            out[flag] = f"{out[flag]} {word}".strip()
        elif not out:
            program.append(word)
    out["program"] = " ".join(program)
    return out
