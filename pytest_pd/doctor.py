"""`pytest-pd doctor CLUSTER`: what is installed where for a cluster, and what is missing, before
anything starts.

For every host that runs a process of the cluster, the host's own Python (the one the cluster file
names, reached the way bring-up reaches it: locally or over SSH) reports its version, the version
of every module the cluster's commands run with ``python -m`` (the engine, the router kind), whether
the model folder is there and which GPUs ``nvidia-smi`` sees. A module counts as there when it
imports, with its dependencies, under that Python. This machine reports what the harness
needs (pytest-pd, the router package, the tokenizer folder). A cluster someone else runs (``launcher:
attach``) is asked over HTTP instead: health, readiness, and each server's version.

The probe is stdlib Python sent as ``python -c`` (Python 3.8 and later); the assessment is pure.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_pd import __version__
from pytest_pd.cluster import engines, routers
from pytest_pd.cluster.commands import LaunchCommand, launch_plan
from pytest_pd.cluster.engines import Engine
from pytest_pd.cluster.launchers import launcher_of
from pytest_pd.cluster.spec import ClusterSpec
from pytest_pd.errors import PdError
from pytest_pd.http_get import get_json, get_status

PROBE = r"""
import json, os, platform, shutil, subprocess, sys
try:
    from importlib import metadata
except ImportError:
    metadata = None
import importlib
args = json.loads(sys.argv[1])
out = {"python": platform.python_version(), "executable": sys.executable, "modules": {},
       "paths": {}, "gpus": None, "gpu_problem": None}
for module, dist in args["modules"].items():
    problem = version = None
    try:
        importlib.import_module(module)  # what `python -m MODULE` needs, its dependencies too
    except BaseException as exc:
        problem = "%s: %s" % (type(exc).__name__, str(exc)[:300])
    if problem is None and metadata is not None:
        try:
            version = metadata.version(dist)
        except Exception:
            version = None
    out["modules"][module] = {"found": problem is None, "version": version, "problem": problem}
for path in args["paths"]:
    out["paths"][path] = os.path.isdir(os.path.expanduser(path))
smi = shutil.which("nvidia-smi")
if smi is None:
    out["gpu_problem"] = "nvidia-smi not found"
else:
    try:
        run = subprocess.run([smi, "--query-gpu=name,memory.total,driver_version",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        if run.returncode == 0:
            out["gpus"] = [line.strip() for line in run.stdout.splitlines() if line.strip()]
        else:
            out["gpu_problem"] = "nvidia-smi failed: " + (run.stderr or run.stdout).strip()[:200]
    except Exception as exc:
        out["gpu_problem"] = "nvidia-smi failed: %s" % exc
print(json.dumps(out))
"""


@dataclass
class HostNeeds:
    """What one host of the cluster must have: its Python, the modules its commands run, the
    folders they read, and whether they need GPUs."""

    host: str
    python: str
    processes: list[str] = field(default_factory=list)
    modules: dict[str, str] = field(default_factory=dict)  # module → the process that runs it
    dists: dict[str, str] = field(default_factory=dict)  # module → the distribution providing it
    paths: dict[str, str] = field(default_factory=dict)  # folder → what needs it
    gpus: bool = False
    pinned: dict[str, str] = field(default_factory=dict)  # module → the engine_version it must have


def module_of(argv: Sequence[str]) -> str | None:
    """The module a ``python -m PKG.MOD`` command line runs, or None."""
    for flag, value in zip(argv, argv[1:], strict=False):
        if flag == "-m":
            return value
    return None


def needs_of(spec: ClusterSpec, plan: Sequence[LaunchCommand]) -> list[HostNeeds]:
    """Per host, in the order the cluster starts them: what its processes need. Pure."""
    engine = engines.engine_of(spec)
    router_package = routers.kind(spec.router.kind).package
    hosts: dict[str, HostNeeds] = {}
    for cmd in plan:
        needs = hosts.setdefault(cmd.host, HostNeeds(cmd.host, cmd.argv[0]))
        needs.processes.append(cmd.name)
        module = module_of(cmd.argv)
        if module is not None:
            needs.modules.setdefault(module, cmd.name)
            needs.dists.setdefault(module, router_package if cmd.role == "router" else engine.distribution)
            if cmd.role != "router" and spec.engine_version and not engine.simulated:
                needs.pinned[module] = spec.engine_version
        if cmd.role != "router":
            if spec.model_path:
                needs.paths.setdefault(spec.model_path, f"the model of {cmd.name}")
            needs.gpus = needs.gpus or engine.uses_gpus(cmd.argv)
    return list(hosts.values())


def assess(
    needs: HostNeeds, probe: Mapping[str, Any] | None, error: str | None = None
) -> tuple[list[str], list[str]]:
    """(report lines, what is missing) for one host from its probe's answer. Pure."""
    if probe is None:
        return [f"host {needs.host}: not reachable: {error}"], [f"{needs.host}: not reachable ({error})"]
    lines = [
        f"host {needs.host}: Python {probe.get('python')} at {probe.get('executable')}",
        f"  runs {', '.join(needs.processes)}",
    ]
    missing = []
    for module, process in needs.modules.items():
        found = (probe.get("modules") or {}).get(module) or {}
        pinned = needs.pinned.get(module)
        if found.get("found") and pinned and found.get("version") and found["version"] != pinned:
            lines.append(f"  MISMATCH {module:<28} {needs.dists.get(module, module)} {found['version']}")
            missing.append(
                f"{needs.host}: {module} is version {found['version']}, the cluster file pins "
                f"engine_version {pinned} (its commands are rendered for that): install it, or change the pin"
            )
        elif found.get("found"):
            version = found.get("version") or "version unknown"
            lines.append(f"  ok       {module:<28} {needs.dists.get(module, module)} {version}")
        else:
            why = found.get("problem") or "not found"
            lines.append(f"  MISSING  {module:<28} ({process} runs `python -m {module}`: {why})")
            missing.append(
                f"{needs.host}: {module} cannot be imported ({why}); {process} needs it: install "
                f"{needs.dists.get(module, module)} into {needs.python}"
            )
    for path, why in needs.paths.items():
        if (probe.get("paths") or {}).get(path):
            lines.append(f"  ok       folder {path}")
        else:
            lines.append(f"  MISSING  folder {path} ({why})")
            missing.append(f"{needs.host}: folder {path} ({why}); copy the model there or fix model.path")
    gpus = probe.get("gpus")
    if gpus:
        lines.append(f"  ok       {len(gpus)} GPU(s): {'; '.join(gpus)}")
    elif needs.gpus:
        lines.append(f"  MISSING  GPUs: {probe.get('gpu_problem')}")
        missing.append(f"{needs.host}: no GPU visible ({probe.get('gpu_problem')})")
    else:
        lines.append(f"  -        no GPU ({probe.get('gpu_problem')}); none needed")
    return lines, missing


def probe_args(needs: HostNeeds) -> str:
    return json.dumps(
        {"modules": {m: needs.dists.get(m, m) for m in needs.modules}, "paths": list(needs.paths)}
    )


Say = Callable[[str], None]


def doctor(spec: ClusterSpec, say: Say = print) -> int:
    """Print the cluster's report; 0 when nothing is missing, 1 otherwise."""
    plan = launch_plan(spec, local_python=sys.executable)
    launcher = launcher_of(spec)
    say(
        f"pytest-pd doctor: {spec.label} ({spec.source}): launcher {spec.launcher}, engine "
        f"{spec.engine}, {len(spec.prefill)} prefill + {len(spec.decode)} decode server(s)"
    )
    missing = _harness(spec, say)
    if not launcher.manages_processes:
        missing += _attached(engines.engine_of(spec), plan, say)
    else:
        missing += _hosts(spec, needs_of(spec, plan), say)
    if missing:
        say(f"{len(missing)} thing(s) missing:")
        for item in missing:
            say(f"  - {item}")
        return 1
    say("nothing missing")
    return 0


def _harness(spec: ClusterSpec, say: Say) -> list[str]:
    tokenizer = Path(spec.tokenizer_path).expanduser()
    ok = tokenizer.is_dir()
    python = sys.version.split()[0]
    say(f"this machine (harness): pytest-pd {__version__}, Python {python} at {sys.executable}")
    say(f"  {'ok      ' if ok else 'MISSING '} tokenizer folder {tokenizer}")
    return [] if ok else [f"this machine: tokenizer folder {tokenizer} (the harness builds prompts with it)"]


def _hosts(spec: ClusterSpec, all_needs: list[HostNeeds], say: Say) -> list[str]:
    launcher = launcher_of(spec)
    hosts = launcher.hosts(spec, say=lambda text: None, local_python=sys.executable)
    missing: list[str] = []
    try:
        if launcher.allocates:  # one allocation (a Slurm job) for every host; an error names each
            with contextlib.suppress(PdError, OSError):
                hosts.connect([needs.host for needs in all_needs])
        for needs in all_needs:
            probe, error = None, None
            try:
                hosts.connect([needs.host])
                host = hosts.get(needs.host)  # importing an engine (torch) takes a while
                result = host.run([needs.python, "-c", PROBE, probe_args(needs)], timeout=180)
                if result.returncode == 0:
                    probe = json.loads(result.stdout.strip().splitlines()[-1])
                else:
                    error = f"{needs.python} failed: {(result.stderr or result.stdout).strip()[-300:]}"
            except (PdError, OSError, ValueError, IndexError) as exc:
                error = str(exc)
            lines, lacking = assess(needs, probe, error)
            for line in lines:
                say(line)
            missing += lacking
    finally:
        hosts.close()
    return missing


def _attached(engine: Engine, plan: Sequence[LaunchCommand], say: Say) -> list[str]:
    """``launcher: attach``: nothing to install here; are the servers and the router there?"""
    missing = []
    for cmd in plan:
        status = get_status(cmd.health_url) if cmd.health_url else None
        version = ""
        if cmd.base_url and status == 200 and engine.server_info_path:
            info = get_json(f"{cmd.base_url}{engine.server_info_path}")
            version = f", {engine.version_of(info) or 'version unknown'}" if "error" not in info else ""
        state = "ok      " if status == 200 else "MISSING "
        say(f"  {state} {cmd.name} at {cmd.health_url}: {status or 'no answer'}{version}")
        if status != 200:
            missing.append(f"{cmd.name}: {cmd.health_url} answered {status or 'nothing'}")
    return missing
