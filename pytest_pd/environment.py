"""What a run records of its environment: pytest-pd's and Python's versions, the router package,
the harness host, the git commit and its subject, and each server's engine and version."""

from __future__ import annotations

import platform
import socket
import subprocess
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from pytest_pd import __version__
from pytest_pd.cluster import engines


def _git(cwd: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def engine_versions(engine_name: str, server_info: Mapping[str, Any]) -> dict[str, str]:
    """{process name: "ENGINE VERSION"} as each server's facts endpoint reports its version."""
    engine = engines.find(engine_name)
    out = {}
    for name, info in server_info.items():
        version = engine.version_of(info) if engine and isinstance(info, Mapping) else None
        if version:
            out[name] = version
    return out


def package_version(dist: str) -> str | None:
    """The installed version of distribution ``dist`` on this machine, or None."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def router_version(package: str) -> str:
    """'smg 1.13.0': the router kind's package as installed on this machine."""
    return f"{package} {package_version(package) or '(not installed here)'}"


def environment(cwd: Path) -> dict[str, Any]:
    return {
        "pytest_pd": __version__,
        "python": platform.python_version(),
        "harness_host": socket.gethostname(),
        "git_commit": _git(cwd, "rev-parse", "HEAD"),
        "git_subject": _git(cwd, "log", "-1", "--format=%s"),
    }
