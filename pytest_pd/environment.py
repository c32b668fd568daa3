"""What a run records of its environment: pytest-pd's and Python's versions, the router package,
the harness host, the git commit and its subject, and each server's SGLang version."""

from __future__ import annotations

import platform
import socket
import subprocess
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from pytest_pd import __version__


def _git(cwd: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def versions_from_server_info(server_info: Mapping[str, Any]) -> dict[str, str]:
    """{process name: version} as each worker's (and the router's) /get_server_info reports it."""
    out = {}
    for name, info in server_info.items():
        if isinstance(info, dict) and info.get("version"):
            out[name] = str(info["version"])
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
    version = package_version
    return {
        "pytest_pd": __version__,
        "python": platform.python_version(),
        "sglang_router": version("sglang-router"),
        "harness_host": socket.gethostname(),
        "git_commit": _git(cwd, "rev-parse", "HEAD"),
        "git_subject": _git(cwd, "log", "-1", "--format=%s"),
    }
