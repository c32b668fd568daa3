"""pytest-pd as a team installs it: the wheel and the sdist built from this repository, the wheel
installed into a fresh virtualenv outside it, then, in an empty folder, `pytest-pd init` and a
bare `pytest` green on the simulated pair (clusters, simulated model and starter all from the
package; nothing from this checkout).

The fresh virtualenv borrows the third-party packages of the test environment (a path line, not
an install: this machine may not reach an index, and the wheel's dependencies are pip's job);
pytest-pd itself comes only from the wheel, which the test checks.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.e2e


def _copy_checkout(dest: Path) -> Path:
    """The files git knows (committed or not, ignored ones left out), links kept as links."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    for name in listed:
        src, dst = REPO / name, dest / name
        if not src.exists() and not src.is_symlink():
            continue  # deleted in the work tree
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            dst.symlink_to(src.readlink())
        else:
            shutil.copy2(src, dst)
    return dest


def _run(argv: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, (
        f"{argv}: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done


def test_wheel_in_a_fresh_venv_then_init_then_pytest(tmp_path: Path):
    source = _copy_checkout(tmp_path / "src")
    dist = tmp_path / "dist"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dist),
            ".",
        ],
        source,
    )
    _run(
        [sys.executable, "-c", f"from setuptools import build_meta; build_meta.build_sdist({str(dist)!r})"],
        source,
    )
    (wheel,) = dist.glob("pytest_pd-*.whl")
    (sdist,) = dist.glob("pytest_pd-*.tar.gz")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    for name in ("sim-pp2.yaml", "sim-tp8.yaml", "h20-pp2.yaml", "models/sim-tiny/tokenizer.json"):
        assert f"pytest_pd/examples/clusters/{name}" in shipped, sorted(shipped)[:20]
    assert {"pytest_pd/py.typed", "pytest_pd/starter/test_pd_acceptance.py.tmpl"} <= shipped
    in_sdist = tarfile.open(sdist).getnames()
    assert any(n.endswith("pytest_pd/examples/clusters/models/sim-tiny/tokenizer.json") for n in in_sdist)
    assert any(n.endswith("/CHANGELOG.md") for n in in_sdist)

    env_dir = tmp_path / "fresh-venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path)
    borrowed = sysconfig.get_paths()["purelib"]  # the test environment's third-party packages
    (Path(site.stdout.strip()) / "borrowed-deps.pth").write_text(borrowed + "\n")
    _run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], tmp_path)

    team = tmp_path / "team-repo"
    team.mkdir()
    where = _run([str(python), "-c", "import pytest_pd; print(pytest_pd.__file__)"], team).stdout
    assert where.startswith(str(env_dir)), where  # the wheel's, not this checkout's
    init = _run([str(env_dir / "bin" / "pytest-pd"), "init"], team)
    assert "wrote suites/test_pd_acceptance.py" in init.stdout and "wrote pytest.ini" in init.stdout
    ran = _run([str(python), "-m", "pytest", "-p", "no:cacheprovider"], team, timeout=600)
    assert "1 passed" in ran.stdout, ran.stdout[-3000:]
    assert (
        "sim-pp2 (candidate, simulated ×10)" in ran.stdout
        and "sim-tp8 (baseline, simulated ×10)" in ran.stdout
    )
    again = _run([str(env_dir / "bin" / "pytest-pd"), "init"], team)
    assert "kept  suites/test_pd_acceptance.py (exists; --force overwrites it)" in again.stdout
    assert "wrote" not in again.stdout
