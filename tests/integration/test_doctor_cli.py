"""`pytest-pd doctor` on this machine: a sim cluster has everything; a host whose Python cannot
import the engine, and a missing model folder, are named as missing with exit status 1."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.helpers import sim_cluster_copy


def doctor(folder: Path, name: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest_pd.cli", "doctor", name, "--cluster-dir", str(folder)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_sim_cluster_has_everything(tmp_path: Path):
    sim_cluster_copy("sim-pp2", tmp_path, baseline=None)
    done = doctor(tmp_path, "sim-pp2")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "host prefill-node: Python" in out and "runs prefill-0, router" in out
    assert re.search(r"ok +pytest_pd.sim +pytest-pd ", out), out
    assert re.search(r"ok +sglang_router.launch_router +sglang-router ", out), out
    assert "none needed" in out and out.rstrip().endswith("nothing missing")


def test_missing_module_and_model_folder_are_named(tmp_path: Path):
    path = sim_cluster_copy("sim-pp2", tmp_path, baseline=None)
    data = yaml.safe_load(path.read_text())
    isolated = tmp_path / "python-isolated"  # the venv's base Python, isolated: no pytest-pd
    isolated.write_text(f'#!/bin/sh\nexec {Path(sys.base_prefix) / "bin" / "python3"} -I "$@"\n')
    isolated.chmod(0o755)
    data["hosts"]["decode-node"]["python"] = str(isolated)
    data["model"]["path"] = str(tmp_path / "no-such-model")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    done = doctor(tmp_path, "sim-pp2")
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert "host decode-node: Python" in out
    assert re.search(
        r"MISSING +pytest_pd.sim +\(decode-0 runs `python -m pytest_pd.sim`: ModuleNotFoundError", out
    )
    assert f"decode-0 needs it: install pytest-pd into {isolated}" in out
    assert f"folder {tmp_path / 'no-such-model'} (the model of decode-0); copy the model there" in out
    assert "Traceback" not in done.stderr
