"""What a run leaves in its run directory for later: ``topology.json`` (what runs where, so
`pytest-pd down RUN_DIR` can stop it) and, for a cluster kept up for debugging, a copy of its
cluster file with ``launcher: attach`` to run tests against it as it is."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from pytest_pd.cluster.spec import ClusterSpec
from pytest_pd.errors import HostError
from pytest_pd.redaction import redact_env

STATE_FILE = "topology.json"


def save_state(run_dir: Path, spec: ClusterSpec, processes: Sequence[dict[str, Any]]) -> None:
    """``RUN_DIR/topology.json`` lists ``processes`` (name, host, pid); with none left to stop,
    the file goes."""
    path = run_dir / STATE_FILE
    if not processes:
        path.unlink(missing_ok=True)
        return
    state = {
        "cluster": spec.label,
        "file": str(spec.source),
        "router_url": spec.router_url,
        "processes": list(processes),
    }
    tmp = run_dir / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(path)


def read_state(run_dir: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((run_dir / STATE_FILE).read_text()))
    except FileNotFoundError:
        raise HostError(
            f"{run_dir} has no {STATE_FILE}: nothing of that run is left running "
            "(teardown removes it), or it is not a run directory."
        ) from None
    except (OSError, ValueError) as exc:
        raise HostError(f"{run_dir / STATE_FILE} cannot be read ({exc}).") from None


def attach_file(spec: ClusterSpec, run_dir: Path) -> Path:
    """A copy of the cluster file with ``launcher: attach`` (no bring-up, no teardown) and paths
    made absolute, written into the run directory: tests run against the cluster as it is."""
    data = redact_env(spec.model_dump(mode="json", exclude_unset=True))  # attach needs no env
    data.update(name=spec.label, launcher="attach")
    data.pop("baseline", None)  # its file lives next to the original, not here
    data["model"]["path"] = spec.model_path
    if spec.model.tokenizer:
        data["model"]["tokenizer"] = spec.tokenizer_path
    path = run_dir / "attach" / f"{spec.label}.yaml"  # clusters are named by their file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"# {spec.label} as left running by pytest-pd; from {spec.source}\n"
        + yaml.safe_dump(data, sort_keys=False)
    )
    return path
