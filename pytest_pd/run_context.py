"""The fields every record of a cluster holds, measured or failed: the cluster (its file resolved
and redacted, its rendered commands), the model, the session, where and when it ran, and the
environment with the router kind's version on this machine."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

from pytest_pd.cluster.commands import launch_identity, render_commands
from pytest_pd.cluster.routers import kind as router_kind
from pytest_pd.cluster.spec import ClusterSpec
from pytest_pd.environment import router_version
from pytest_pd.record import ClusterInfo, Environment, ModelInfo
from pytest_pd.redaction import redact_commands, redact_env


def run_context(
    spec: ClusterSpec, started: float, run_dir: Path, *, env: Environment, session: str, baseline_mark: bool
) -> dict[str, Any]:
    return {
        "source": "suite",
        "cluster": ClusterInfo(
            name=spec.label,
            file=str(spec.source),
            engine=spec.engine,
            launcher=spec.launcher,
            baseline=spec.baseline,
            prefill_strategy=spec.prefill_strategy(),
            spec=redact_env(spec.model_dump(mode="json")),
            commands=redact_commands(render_commands(spec, local_python=sys.executable)),
            launch=redact_commands(launch_identity(spec)),
            router_url=spec.router_url,
            router_kind=spec.router.kind,
        ),
        "model": ModelInfo(name=spec.model_name, path=spec.model_path),
        "baseline_mark": baseline_mark,
        "session": session,
        "started_at": started,
        "host": socket.gethostname(),
        "run_dir": str(run_dir),
        "environment": env.model_copy(
            update={"router": router_version(router_kind(spec.router.kind).package)}
        ),
    }
